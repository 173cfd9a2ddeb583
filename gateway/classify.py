"""Statement classification: thin wrappers over :func:`gateway.sql.read_sql`.

The rule (read or write, deterministic or not) and the scanner live in `gateway.sql`; these
names stay importable for the callers that still use them. Each wraps ``read_sql`` (memoized),
so calling several of them on one text reads it once. New code should call ``read_sql`` and
use its facts directly.
"""

from __future__ import annotations

from gateway.sql import NONDETERMINISTIC, READ, WRITE, WRITE_FUNCTIONS, read_sql

__all__ = [
    "NONDETERMINISTIC",
    "READ",
    "WRITE",
    "WRITE_FUNCTIONS",
    "classify",
    "classify_statement",
    "count_kinds",
    "is_deterministic",
    "is_read_only",
]


def classify(sql: str) -> tuple[str, ...]:
    """The kind of each statement of a (multi-statement) SQL text; () for an empty one.
    (Wraps ``read_sql(sql).kinds``.)"""
    return read_sql(sql).kinds


def classify_statement(statement: str) -> str:
    """`READ` or `WRITE` for a text: a read only when it has statements and all are reads.
    (Wraps ``read_sql(statement).read``.)"""
    return READ if read_sql(statement).read else WRITE


def is_read_only(sql: str) -> bool:
    """True when the text holds at least one statement and every statement is a read.
    (Wraps ``read_sql(sql).read``.)"""
    return read_sql(sql).read


def count_kinds(sql: str) -> dict[str, int]:
    """How many statements of each kind: ``{"read": n, "write": m}``, both keys present.
    (Wraps ``read_sql(sql).kind_counts``.)"""
    return read_sql(sql).kind_counts


def is_deterministic(sql: str) -> bool:
    """False when any statement calls a non-deterministic function, reads a sequence or uses a
    variable. (Wraps ``read_sql(sql).deterministic``.)"""
    return read_sql(sql).deterministic
