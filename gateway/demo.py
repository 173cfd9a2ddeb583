"""The embedded demo: a small SQLite database created on first use, so a new user sees the
gateway answer before configuring any MySQL server."""

from __future__ import annotations

import sqlite3
from pathlib import Path

DEMO_ROWS = 100


def ensure_demo_database(path: str) -> bool:
    """Create the demo database at ``path`` unless it exists; True when it was created."""
    target = Path(path)
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial)
    try:
        conn.executescript(
            """
            CREATE TABLE users (
                id INTEGER PRIMARY KEY,
                name VARCHAR(64) NOT NULL,
                email VARCHAR(128),
                created DATETIME NOT NULL
            );
            """
        )
        conn.executemany(
            "INSERT INTO users (id, name, email, created) VALUES (?, ?, ?, ?)",
            [
                (
                    i,
                    f"user{i}",
                    None if i % 10 == 0 else f"user{i}@example.com",
                    f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00",
                )
                for i in range(1, DEMO_ROWS + 1)
            ],
        )
        conn.commit()
    finally:
        conn.close()
    partial.rename(target)
    return True
