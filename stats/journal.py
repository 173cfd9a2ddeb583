"""Bounded journals: the last N requests or errors, oldest first."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any


class Journal:
    """Keeps the newest ``size`` entries; older ones fall off."""

    def __init__(self, size: int = 100) -> None:
        if size < 1:
            raise ValueError("a journal needs size >= 1")
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)
        self.size = size

    def add(self, entry: Mapping[str, Any]) -> None:
        """Append one entry (copied, so later changes by the caller do not leak in)."""
        self._entries.append(dict(entry))

    def entries(self) -> list[dict[str, Any]]:
        """Copies of the entries, oldest first."""
        return [dict(entry) for entry in self._entries]

    def __len__(self) -> int:
        return len(self._entries)
