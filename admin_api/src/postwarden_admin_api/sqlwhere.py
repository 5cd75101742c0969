"""WHERE clauses assembled from constant fragments, each filter with its own parameters.

A statement that holds every optional filter as ``($n IS NULL OR ...)`` serves every
search, but once PostgreSQL keeps one generic plan for it (after five runs, where it
deems that plan no costlier) no filter can use its index, and each page walks the table
from one end. So a search names only the filters it was given, each from a constant
fragment (never a value: values are parameters).
"""

from __future__ import annotations

from typing import Any


class Where:
    """The clause and its parameters, in the order the fragments were added."""

    def __init__(self) -> None:
        self.params: list[Any] = []
        self._clauses: list[str] = []

    def add(self, fragment: str, *values: Any) -> None:
        """``fragment`` holds a ``${}`` for each value, numbered after those added before."""
        first = len(self.params) + 1
        self.params.extend(values)
        self._clauses.append(fragment.format(*range(first, first + len(values))))

    def parameter(self, value: Any) -> str:
        """The placeholder of a parameter outside the clause (a LIMIT)."""
        self.params.append(value)
        return f"${len(self.params)}"

    def __str__(self) -> str:
        """`` WHERE a AND b``, or nothing without a filter."""
        return f" WHERE {' AND '.join(self._clauses)}" if self._clauses else ""
