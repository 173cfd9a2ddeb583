"""Bounded journals: the last N requests or errors, oldest first."""

from __future__ import annotations

from collections import deque
from typing import Any


class Journal:
    """Keeps the newest ``size`` entries; older ones fall off.

    An entry is recorded as a tuple of values in the order of ``fields`` (one tuple per
    request is cheap on the hot path) and read back as a dict."""

    def __init__(self, fields: tuple[str, ...], size: int = 100) -> None:
        if size < 1:
            raise ValueError("a journal needs size >= 1")
        self.fields = fields
        self._entries: deque[tuple[Any, ...]] = deque(maxlen=size)
        self.size = size

    def add(self, values: tuple[Any, ...]) -> None:
        """Append one entry: its values, in the order of ``fields``."""
        self._entries.append(values)

    def entries(self) -> list[dict[str, Any]]:
        """The entries as dicts (new ones: changing them changes nothing here), oldest
        first."""
        fields = self.fields
        return [dict(zip(fields, values)) for values in self._entries]

    def __len__(self) -> int:
        return len(self._entries)
