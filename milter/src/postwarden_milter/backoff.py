"""When the audit writer tries PostgreSQL again after a connect or a write failed."""

from __future__ import annotations

import math
from collections.abc import Callable

RETRY_MIN, RETRY_MAX = 0.5, 30.0
# While mail is refused for the backlog: a refused connect costs little, a second waited
# refuses a second's mail.
REFUSING_RETRY = 1.0


class Backoff:
    """A wait that doubles from RETRY_MIN to RETRY_MAX with each failure and starts
    afresh only once a write succeeds, not merely a connect: a database that takes
    connections but no writes is not hammered. While ``urgent()`` (mail refused until the
    writer drains the spool) it is at most REFUSING_RETRY, decided when asked: the spool
    may have filled since the failure."""

    def __init__(self, urgent: Callable[[], bool], clock: Callable[[], float]) -> None:
        self._urgent = urgent
        self._clock = clock
        self._failed_at = -math.inf
        self._current = 0.0  # the wait after the last failure
        self._next = RETRY_MIN  # the one after the next failure

    @property
    def wait(self) -> float:
        return min(self._current, REFUSING_RETRY) if self._urgent() else self._current

    def due(self) -> bool:
        return self._clock() >= self._failed_at + self.wait

    def failed(self) -> None:
        self._failed_at = self._clock()
        self._current, self._next = self._next, min(self._next * 2, RETRY_MAX)

    def reset(self) -> None:
        """Postgres writes again: the next outage starts afresh."""
        self._next = RETRY_MIN
