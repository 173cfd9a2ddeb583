"""Statement text handling: thin wrappers over `gateway.sql`.

MySQL backends receive the SQL text whole (the server splits it and returns one result per
statement); the SQLite backend runs one statement at a time, so it splits here. The scanners
(one per dialect) live in `gateway.sql`; these names stay importable for the callers that still
use them.
"""

from __future__ import annotations

from gateway.sql import read_sql, to_qmark

__all__ = ["split_statements", "to_qmark"]


def split_statements(sql: str, dialect: str = "mysql") -> list[str]:
    """The statements of ``sql``, split where the server splits. (Wraps
    ``read_sql(sql, dialect).statements``.)"""
    return list(read_sql(sql, dialect).statements)
