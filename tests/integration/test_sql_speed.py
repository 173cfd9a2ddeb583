"""CPU cost of reading SQL (gateway.sql.read_sql) on hostile texts of 1 MiB.

Each shape is built to make a character-by-character scanner slow: long runs of tokens,
dense comments, quotes, placeholders, executable comments, NULs, texts that must be read
under several sql_modes. Two properties per shape, on CPU time (``time.process_time``, best
of three, the machine being shared):

- a 1 MiB text is read within `BOUND` seconds;
- reading is linear: 1 MiB costs less than `RATIO` times 64 KiB (16 would be exact).

Shapes the scanner does not yet read within the bound are marked ``xfail`` with their figure.
Not strict: some are near the bound, and a CPU-time figure on a shared machine passes one run
in a few (an XPASS in the summary says which to look at).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import pytest

from gateway.sql import _read

MIB = 1 << 20
BOUND = 0.050
RATIO = 32


def _fill(unit: str, size: int, head: str = "", tail: str = "") -> str:
    body = unit * ((size - len(head) - len(tail)) // len(unit) + 1)
    return (head + body)[: size - len(tail)] + tail


def _slow(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=False, reason=f"read in {reason} here, over the bound")


SHAPES: list[tuple[str, Callable[[int], str], str]] = [
    ("arithmetic", lambda n: _fill("+1", n, "SELECT 1"), "mysql"),
    ("parentheses", lambda n: _fill("(1)+", n, "SELECT 1+"), "mysql"),
    ("empty-statements", lambda n: _fill(";", n), "mysql"),
    ("spaces", lambda n: _fill(" ", n, "SELECT 1"), "mysql"),
    ("long-string", lambda n: _fill("a", n, "SELECT '", "'"), "mysql"),
    ("doubled-quotes", lambda n: _fill("a''", n, "SELECT '", "'"), "mysql"),
]
SLOW: list[tuple[str, Callable[[int], str], str, str]] = [
    ("identifiers", lambda n: _fill(", a", n, "SELECT a"), "mysql", "~150 ms"),
    ("strings", lambda n: _fill("'a',", n, "SELECT "), "mysql", "~70 ms"),
    ("nul-in-string", lambda n: _fill("a\x00\\\\", n, "SELECT '", "'"), "mysql", "~130 ms"),
    ("statements", lambda n: _fill("SELECT 1;", n), "mysql", "~400 ms"),
    ("comments", lambda n: _fill("/**/", n, "SELECT 1"), "mysql", "~90 ms"),
    ("unclosed-comments", lambda n: _fill("/*", n), "mysql", "~100 ms"),
    ("backslashes", lambda n: _fill("\\\\", n, "SELECT '", "'"), "mysql", "~160 ms"),
    ("escaped-quotes", lambda n: _fill("\\'", n, "SELECT '", "'"), "mysql", "~380 ms"),
    ("placeholders", lambda n: _fill(",%s", n, "SELECT %s"), "mysql", "~90 ms"),
    ("dash-lines", lambda n: _fill("-- c\n", n, "SELECT 1\n"), "mysql", "~90 ms"),
    ("hash-lines", lambda n: _fill("# c\n", n, "SELECT 1\n"), "mysql", "~80 ms"),
    ("executable", lambda n: _fill("/*!1*/", n, "SELECT 1"), "mysql", "~200 ms"),
    ("versioned", lambda n: _fill("/*!50000 1*/", n, "SELECT 1"), "mysql", "~110 ms"),
    ("mariadb-only", lambda n: _fill("/*M!100000 1*/", n, "SELECT 1"), "mysql", "~200 ms"),
    ("unicode", lambda n: _fill("é\u3000a\u00a0+", n, "SELECT a"), "mysql", "~100 ms"),
    ("nul-bytes", lambda n: _fill("\x00", n, "SELECT 1"), "mysql", "~240 ms"),
    ("ansi-quotes", lambda n: _fill('"a\\"', n, "SELECT "), "mysql", "~320 ms"),
    ("sqlite", lambda n: _fill("+1", n, "SELECT 1"), "sqlite", "~135 ms"),
]


def _cpu(text: str, dialect: str) -> float:
    best = float("inf")
    for _ in range(3):
        gc.collect()  # (garbage of earlier tests is not this read's cost)
        started = time.process_time()
        _read(text, dialect)  # (not the memo: every run reads)
        best = min(best, time.process_time() - started)
    return best


def _check(make: Callable[[int], str], dialect: str) -> None:
    small = _cpu(make(64 * 1024), dialect)
    large = _cpu(make(MIB), dialect)
    assert large < BOUND, f"1 MiB read in {large * 1000:.1f} ms"
    assert large < RATIO * max(small, 0.0005), (
        f"64 KiB {small * 1000:.1f} ms, 1 MiB {large * 1000:.1f} ms"
    )


@pytest.mark.parametrize(("make", "dialect"), [pytest.param(m, d, id=i) for i, m, d in SHAPES])
def test_hostile_text_is_read_fast(make: Callable[[int], str], dialect: str) -> None:
    """A hostile 1 MiB text is read in under 50 ms of CPU, linearly in its length."""
    _check(make, dialect)


@pytest.mark.parametrize(
    ("make", "dialect"),
    [pytest.param(m, d, id=i, marks=_slow(figure)) for i, m, d, figure in SLOW],
)
def test_hostile_text_not_yet_read_fast(make: Callable[[int], str], dialect: str) -> None:
    """The same bound for the shapes still over it (each marked with its figure)."""
    _check(make, dialect)


_SLOW_MAKERS = [(i, m) for i, m, _, _ in SLOW]


@pytest.mark.parametrize(("make", "dialect"), [pytest.param(m, d, id=i) for i, m, d, _ in SLOW])
def test_reading_is_linear(make: Callable[[int], str], dialect: str) -> None:
    """Whatever its cost, reading grows linearly: 1 MiB costs under 32 times 64 KiB (16 for an exact line; a quadratic reading would be 256), and
    under 1 s (the former scanner: up to 2 s for these, much more with version gates)."""
    small = _cpu(make(64 * 1024), dialect)
    large = _cpu(make(MIB), dialect)
    # 116,000 statements are as many strings and facts: the garbage collector's full passes
    # grow with the heap, so that shape is allowed twice the ratio (measured 24-39 times).
    ratio = 2 * RATIO if make is dict(_SLOW_MAKERS)["statements"] else RATIO
    assert large < ratio * max(small, 0.0005), (
        f"64 KiB {small * 1000:.1f} ms, 1 MiB {large * 1000:.1f} ms"
    )
    assert large < 1.0
