"""How the README test reads the README: blocks, markers, commands, shown output, matching."""

from __future__ import annotations

import pytest

from tests.readme_examples import (
    ReadmeError,
    match_output,
    parse_readme,
    ports_named,
    python_statements,
    rewrite,
    server_command,
    shell_commands,
    strip_comment,
)

FENCE = "```"


def test_blocks_are_named_by_heading_and_index_and_only_run_languages_count() -> None:
    text = "\n".join(
        [
            "# Title",
            f"{FENCE}sh",
            "echo a",
            FENCE,
            "## Two words",
            f"{FENCE}json",
            "{}",
            FENCE,
            f"{FENCE}python",
            "print(1)",
            FENCE,
            "- a list item:",
            f"  {FENCE}sh",
            "  echo b",
            f"  {FENCE}",
        ]
    )
    examples = parse_readme(text)
    assert [(e.id, e.lang, e.line, e.code) for e in examples] == [
        ("Title-1", "sh", 3, "echo a\n"),
        ("Two-words-1", "python", 10, "print(1)\n"),
        ("Two-words-2", "sh", 14, "echo b\n"),
    ]


def test_markers_give_needs_and_skip_to_the_next_block() -> None:
    text = "\n".join(
        [
            "## A",
            "<!-- example: needs=redis,auth -->",
            "",
            f"{FENCE}sh",
            "true",
            FENCE,
            "<!-- example: needs=mariadb; skip=other hosts; really -->",
            f"{FENCE}sh",
            "true",
            FENCE,
            f"{FENCE}sh",
            "true",
            FENCE,
        ]
    )
    a, b, c = parse_readme(text)
    assert (a.needs, a.skip) == ({"redis", "auth"}, None)
    assert (b.needs, b.skip) == ({"mariadb"}, "other hosts; really")
    assert (c.needs, c.skip) == (frozenset(), None)


@pytest.mark.parametrize(
    "text, message",
    [
        ("<!-- example: needs=postgres -->\n```sh\ntrue\n```", "needs=postgres"),
        ("<!-- example: fresh=1 -->\n```sh\ntrue\n```", "unknown marker key"),
        ("<!-- example: needs=redis -->\n```json\n{}\n```", "not run"),
        ("<!-- example: needs=redis -->\ntext\n```sh\ntrue\n```", "right before"),
        ("<!-- example: skip= -->\n```sh\ntrue\n```", "without a reason"),
        ("```sh\ntrue\n", "never closed"),
    ],
)
def test_bad_markers_and_open_blocks_are_errors(text: str, message: str) -> None:
    with pytest.raises(ReadmeError, match=message):
        parse_readme(text)


def test_shown_output_is_the_comments_right_under_a_command() -> None:
    code = "\n".join(
        [
            "# a description",
            "curl -s a   # a note",
            '# {"x": 1}',
            "# second line",
            "",
            "# a description after a blank line",
            "dbslayer serve \\",
            "  --port 9090",
            "  # an indented note",
            "curl 'b",
            "c'",
            "# out",
        ]
    )
    commands = shell_commands(code)
    assert [(c.text, c.line, c.expected) for c in commands] == [
        ("curl -s a   # a note", 2, ['{"x": 1}', "second line"]),
        ("dbslayer serve \\\n  --port 9090", 7, []),
        ("curl 'b\nc'", 10, ["out"]),
    ]


def test_python_output_shown_in_a_function_is_expected_where_it_is_called() -> None:
    code = "\n".join(
        [
            "import json",
            "x = 1",
            "print(x)",
            "# 1",
            "def main():",
            "    print(2)",
            "    # 2",
            "",
            "main()",
            "# 3",
        ]
    )
    statements = python_statements(code)
    assert [(s.first, s.last, s.expected) for s in statements] == [
        (1, 1, []),
        (2, 2, []),
        (3, 3, ["1"]),
        (5, 6, []),
        (9, 9, ["2", "3"]),
    ]


@pytest.mark.parametrize(
    "expected, actual, ok",
    [
        (["a"], "a\n", True),
        (["a"], "b\n", False),
        (
            ["HTTP/1.1 403 Forbidden", '{"ERROR":"x"}'],
            'HTTP/1.1 403 Forbidden\r\nA: b\r\n\r\n{"ERROR":"x"}',
            True,
        ),
        (["second", "first"], "first\nsecond\n", False),  # in order
        (['{"a":1,"b":[1,2]}'], '{"b": [1, 2], "a": 1}', True),  # JSON compared as JSON
        (['{"a":1}'], '{"a": 2}', False),
        (['{"RESULT":...,"SERVER":"demo"}'], '{"RESULT":[1,2],"SERVER":"demo"}', True),
        (['{"RESULT":...,"SERVER":"demo"}'], '{"RESULT":[1,2],"SERVER":"db1"}', False),
        (["...tail"], "a long tail", True),
        ([], "anything", True),
        (["x"], "", False),
    ],
)
def test_matching(expected: list[str], actual: str, ok: bool) -> None:
    assert (match_output(expected, actual) is None) is ok


@pytest.mark.parametrize(
    "text, server",
    [
        ("dbslayer serve", True),
        (
            "dbslayer serve --port 9092 --redis redis://127.0.0.1:6379/0     # (in another terminal)",
            True,
        ),
        ("DBSLAYER_BACKENDS='mysql://a b' twistd -ny conf/dbslayer.tac", True),
        ("twistd -n dbslayer --port 9090 \\\n  --backend x", True),
        ("dbslayer serve --help", False),
        ("dbslayer users list", False),
        ('dbslayer serve --mysql-config f 2>&1; echo "exit $?"', False),
        ("dbslayer grants --backend x | mariadb", False),
        ("curl http://127.0.0.1:9090/", False),
    ],
)
def test_server_commands(text: str, server: bool) -> None:
    assert server_command(text) is server


def test_helpers() -> None:
    assert strip_comment("curl 'a # b' \"c\" # note") == "curl 'a # b' \"c\""
    assert strip_comment("echo a#b") == "echo a#b"
    assert ports_named("dbslayer serve --port 9191 --x") == [9191]
    assert (
        rewrite(
            "127.0.0.1:9090 localhost:9090 127.0.0.1:90901",
            {"127.0.0.1:9090": "127.0.0.1:1", "localhost:9090": "localhost:1"},
        )
        == "127.0.0.1:1 localhost:1 127.0.0.1:90901"
    )
