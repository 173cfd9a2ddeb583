"""The README's examples, read as tests: the blocks, their commands, the output they show.

Pure logic (no I/O besides reading a text given to it), used by tests/integration/test_readme.py
and tested in tests/unit/test_readme_examples.py.

Conventions (README.md's source):

- Every ```sh, ```bash, ```console and ```python block is an example. Other blocks (```json,
  ```ini, plain ```) are shown, not run.
- The output a command prints is shown as comment lines starting with ``# `` right under the
  command, with no blank line between (for Python: right under the statement). ``...`` in such
  a line stands for any text. A comment after a blank line, an indented one, and a comment at
  the end of a command line explain; they are not compared.
- A block can be preceded by ``<!-- example: needs=a,b -->`` (fixtures it runs with) or
  ``<!-- example: skip=REASON -->`` (never run; the reason, the rest of the marker, is shown in
  the skip); ``needs=a; skip=REASON`` for both.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import dataclass, field

#: Languages of the blocks that are run.
RUN_LANGS = {"sh": "sh", "bash": "sh", "shell": "sh", "console": "console", "python": "python"}
#: What ``needs=`` may name.
KNOWN_NEEDS = frozenset({"mariadb", "redis", "auth"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MARKER = re.compile(r"^\s*<!--\s*example:\s*(?P<body>.*?)\s*-->\s*$")


class ReadmeError(ValueError):
    """A README source the examples cannot be read from (a bad marker, an open fence)."""


@dataclass
class Example:
    heading: str
    index: int  # 1-based, among the runnable blocks under the same heading
    lang: str  # "sh", "console" or "python"
    line: int  # README line of the block's first code line
    code: str
    needs: frozenset[str] = frozenset()
    skip: str | None = None

    @property
    def id(self) -> str:
        return f"{slug(self.heading)}-{self.index}"


@dataclass
class Command:
    """One shell command (continuation lines included) and the output shown under it."""

    text: str
    line: int  # README line of its first line (from the block's first line)
    expected: list[str] = field(default_factory=list)


@dataclass
class Statement:
    """One top-level Python statement, its source lines and the output shown in/under it."""

    first: int  # 1-based lines within the block
    last: int
    expected: list[str] = field(default_factory=list)


def slug(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9_]+", text.replace("`", ""))
    return "-".join(words) or "top"


def parse_marker(body: str, line: int) -> tuple[frozenset[str], str | None]:
    needs: set[str] = set()
    skip: str | None = None
    head, sep, reason = body.partition("skip=")  # (the reason is the rest: it may hold ";")
    if sep:
        skip = reason.strip()
        if not skip:
            raise ReadmeError(f"README line {line}: skip= without a reason")
        body = head.strip().rstrip(";")
    for part in filter(None, (p.strip() for p in body.split(";"))):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise ReadmeError(f"README line {line}: marker part {part!r} is not key=value")
        if key == "needs":
            names = {n.strip() for n in value.split(",") if n.strip()}
            unknown = names - KNOWN_NEEDS
            if unknown:
                raise ReadmeError(
                    f"README line {line}: needs={','.join(sorted(unknown))} is not one of "
                    f"{', '.join(sorted(KNOWN_NEEDS))}"
                )
            needs |= names
        elif key == "skip":
            skip = value
        else:
            raise ReadmeError(f"README line {line}: unknown marker key {key!r} (needs=, skip=)")
    return frozenset(needs), skip


def parse_readme(text: str) -> list[Example]:
    """The runnable blocks of a README, in order."""
    lines = text.splitlines()
    examples: list[Example] = []
    heading = "top"
    counts: dict[str, int] = {}
    pending: tuple[int, frozenset[str], str | None] | None = None  # a marker waiting for its block
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            indent, mark, lang = fence["indent"], fence["fence"], fence["lang"].lower()
            body: list[str] = []
            j = i + 1
            while j < len(lines):
                close = lines[j].strip()
                if close.startswith(mark[0] * len(mark)) and not close.strip(mark[0]):
                    break
                body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
                j += 1
            else:
                raise ReadmeError(f"README line {i + 1}: the code block is never closed")
            if lang in RUN_LANGS:
                counts[heading] = counts.get(heading, 0) + 1
                needs, skip = (pending[1], pending[2]) if pending else (frozenset(), None)
                examples.append(
                    Example(
                        heading,
                        counts[heading],
                        RUN_LANGS[lang],
                        i + 2,
                        "\n".join(body) + "\n",
                        needs,
                        skip,
                    )
                )
            elif pending:
                raise ReadmeError(
                    f"README line {pending[0]}: an example marker before a ```{lang} block, "
                    "which is not run"
                )
            pending = None
            i = j + 1
            continue
        marker = _MARKER.match(line)
        if marker:
            if pending:
                raise ReadmeError(f"README line {pending[0]}: a marker without its block")
            pending = (i + 1, *parse_marker(marker["body"], i + 1))
        elif line.strip():
            if pending:
                raise ReadmeError(
                    f"README line {pending[0]}: an example marker must come right before its "
                    "code block (blank lines allowed)"
                )
            head = _HEADING.match(line)
            if head:
                heading = head[2]
        i += 1
    if pending:
        raise ReadmeError(f"README line {pending[0]}: a marker without its block")
    return examples


def _scan(line: str, quote: str | None) -> tuple[str | None, int]:
    """Shell quoting state after ``line`` (which starts inside ``quote``), and where a comment
    begins in it (-1: none)."""
    k = 0
    word_start = quote is None
    while k < len(line):
        c = line[k]
        if quote == "'":
            if c == "'":
                quote = None
        elif quote == '"':
            if c == "\\":
                k += 1
            elif c == '"':
                quote = None
        elif c == "\\":
            k += 1
        elif c in "'\"":
            quote = c
        elif c == "#" and word_start:
            return None, k
        word_start = quote is None and c in " \t;|&()"
        k += 1
    return quote, -1


def _continues(line: str, quote: str | None) -> tuple[bool, str | None]:
    quote, comment = _scan(line, quote)
    if comment >= 0:
        return False, None
    return quote is not None or line.endswith("\\"), quote


def shell_commands(code: str) -> list[Command]:
    """A shell block's commands, each with the output lines shown right under it."""
    commands: list[Command] = []
    lines = code.splitlines()
    attach = False  # the previous line was a command or its shown output
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            attach = False
        elif stripped.startswith("#"):
            if attach and line.startswith("#") and commands:
                commands[-1].expected.append(line[2:] if line.startswith("# ") else line[1:])
            else:
                attach = False
        else:
            first = i
            more, quote = _continues(line, None)
            while more and i + 1 < len(lines):
                i += 1
                more, quote = _continues(lines[i], quote)
            commands.append(Command("\n".join(lines[first : i + 1]), first + 1))
            attach = True
        i += 1
    return commands


def console_commands(code: str) -> list[Command]:
    """A ```console block: ``$ `` lines are commands, the lines under them their output."""
    commands: list[Command] = []
    for n, line in enumerate(code.splitlines(), 1):
        if line.startswith("$ "):
            commands.append(Command(line[2:], n))
        elif commands and line.strip():
            commands[-1].expected.append(line)
    return commands


def python_statements(code: str) -> list[Statement]:
    """A Python block's top-level statements; a ``# `` comment line right under a code line
    (no blank line between) is output shown for the statement that line belongs to. Output
    shown inside a function or class is printed when it is called: it is expected from the
    next statement that is not a definition."""
    tree = ast.parse(code)
    nodes = tree.body
    statements = [Statement(node.lineno, node.end_lineno or node.lineno) for node in nodes]
    owner: Statement | None = None
    for n, line in enumerate(code.splitlines(), 1):
        stripped = line.strip()
        inside = [s for s in statements if s.first <= n <= s.last]
        if not stripped:
            owner = None
        elif stripped.startswith("#"):
            if inside and inside[0].first != n:
                owner = inside[0]
            if owner is not None and stripped.startswith("# "):
                owner.expected.append(stripped[2:])
            elif owner is not None and stripped == "#":
                owner.expected.append("")
        else:
            owner = inside[0] if inside else None
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    carried: list[str] = []
    for node, statement in zip(nodes, statements):
        if isinstance(node, definitions):
            carried += statement.expected
            statement.expected = []
        elif carried:
            statement.expected[:0] = carried
            carried = []
    if carried and statements:
        statements[-1].expected += carried
    return statements


def _line_matches(expected: str, actual: str) -> bool:
    expected, actual = expected.rstrip(), actual.rstrip()
    if expected == actual:
        return True
    if "..." in expected:
        pattern = ".*".join(re.escape(part) for part in expected.split("..."))
        return re.fullmatch(pattern, actual, re.DOTALL) is not None
    if expected[:1] in "{[" and actual[:1] in "{[":
        try:
            return bool(json.loads(expected) == json.loads(actual))
        except ValueError:
            return False
    return False


def match_output(expected: list[str], actual: str) -> str | None:
    """None when every expected line matches a line of ``actual``, in order (lines between
    are allowed: the headers ``curl -i`` prints, log lines); else what did not match."""
    lines = [line.rstrip("\r") for line in actual.splitlines()]
    k = 0
    for want in expected:
        while k < len(lines) and not _line_matches(want, lines[k]):
            k += 1
        if k == len(lines):
            return f"no line matches {want!r} (after the lines matched before it)"
        k += 1
    return None


_PORT_OPTION = re.compile(r"--port[ =](\d+)")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def strip_comment(text: str) -> str:
    """A shell command without its comments (``cmd --x   # why`` -> ``cmd --x``)."""
    out: list[str] = []
    quote: str | None = None
    for line in text.split("\n"):
        quote, comment = _scan(line, quote)
        out.append(line[:comment].rstrip() if comment >= 0 else line)
    return "\n".join(out)


def server_command(text: str) -> bool:
    """Whether a shell command starts a server that runs until stopped: a simple command (no
    list, pipeline or redirection) ``dbslayer serve`` or ``twistd`` (the README shows no
    daemonizing twistd), without ``--help``."""
    line = strip_comment(text).replace("\\\n", " ").strip().removesuffix("&")
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        words = shlex.split(line)
    except ValueError:
        return False
    if any(t and set(t) <= set(";&|<>()") for t in tokens):
        return False  # (a list or pipeline: run to its end like any command)
    while words and _ASSIGNMENT.match(words[0]):
        words.pop(0)
    if not words or "--help" in words or "-h" in words:
        return False
    if words[0] == "dbslayer":
        return words[1:2] == ["serve"]
    return words[0] == "twistd"


def ports_named(text: str) -> list[int]:
    """The ports a command names with ``--port N``."""
    return [int(p) for p in _PORT_OPTION.findall(text)]


def rewrite(text: str, replacements: dict[str, str]) -> str:
    """Replace each key by its value, longest keys first, in one pass."""
    if not replacements:
        return text
    keys = sorted(replacements, key=len, reverse=True)
    # (a key ending in a digit, a port, never matches the start of a longer number)
    pattern = re.compile(
        "|".join(re.escape(k) + (r"(?!\d)" if k[-1:].isdigit() else "") for k in keys)
    )
    return pattern.sub(lambda m: replacements[m.group(0)], text)
