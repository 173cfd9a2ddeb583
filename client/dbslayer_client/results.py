"""What a request answered: `Result` per statement, `Results` for the request."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

__all__ = ["Result", "Results"]


@dataclass(slots=True)
class Result:
    """One statement's outcome: a result set (``columns``, ``types``, ``rows``) or, for a
    statement without one, ``affected_rows`` and ``insert_id`` (0 when none was generated)."""

    columns: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    affected_rows: int | None = None
    insert_id: int | None = None
    #: True when the gateway's row limit cut the result set short (``TRUNCATED``): ``rows``
    #: holds the first rows only.
    truncated: bool = False

    @property
    def has_rows(self) -> bool:
        """True when the statement returned a result set (possibly empty)."""
        return self.affected_rows is None

    def dicts(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name (a later duplicate name wins)."""
        return [dict(zip(self.columns, row)) for row in self.rows]


class Results(Sequence[Result]):
    """All statements of one request, in order, with the backend that ran them (``server``),
    the ``X-Cache`` header (``cache``: ``hit``, ``miss``, ``bypass`` or None) and the answered
    info flags (``info``). ``rows``, ``columns``, ``types``, ``dicts()``, ``affected_rows`` and
    ``insert_id`` are those of the last statement. Equality compares the results, ``server``
    and ``info``, not ``cache``."""

    __slots__ = ("_results", "server", "cache", "info")

    def __init__(
        self,
        results: Iterable[Result] = (),
        *,
        server: str | None = None,
        cache: str | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self._results = list(results)
        self.server = server
        self.cache = cache
        self.info: dict[str, Any] = dict(info or {})

    @overload
    def __getitem__(self, index: int) -> Result: ...

    @overload
    def __getitem__(self, index: slice) -> list[Result]: ...

    def __getitem__(self, index: int | slice) -> Result | list[Result]:
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Results):
            return NotImplemented
        return (self._results, self.server, self.info) == (other._results, other.server, other.info)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Results({self._results!r}, server={self.server!r}, cache={self.cache!r})"

    def __getstate__(self) -> tuple[list[Result], str | None, str | None, dict[str, Any]]:
        return (self._results, self.server, self.cache, self.info)

    def __setstate__(
        self, state: tuple[list[Result], str | None, str | None, dict[str, Any]]
    ) -> None:
        self._results, self.server, self.cache, self.info = state

    @property
    def last(self) -> Result:
        """The last statement's Result (an empty one when the request ran no SQL)."""
        return self._results[-1] if self._results else Result()

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        return self.last.rows

    @property
    def columns(self) -> tuple[str, ...]:
        return self.last.columns

    @property
    def types(self) -> tuple[str, ...]:
        return self.last.types

    @property
    def affected_rows(self) -> int | None:
        return self.last.affected_rows

    @property
    def insert_id(self) -> int | None:
        return self.last.insert_id

    def dicts(self) -> list[dict[str, Any]]:
        return self.last.dicts()
