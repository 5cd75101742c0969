"""Lines said at most once a minute: on a bad day the same warning, for every refused
MAIL FROM or every dropped batch, would bury everything else in the log. The metrics
count each; the log says each kind when it first happens, then at most once an interval
with how many happened since it was last said, and how long ago that was (a count
gathered over a quiet day must not read as a burst now)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class Tally:
    """How many of a kind came since its line was last said, and how many seconds ago
    that was (None: never)."""

    count: int
    since: float | None

    def __str__(self) -> str:
        if self.since is None:
            return f"{self.count} so far"
        return f"{self.count} in the last {self.since:.0f} s"


class Occasional:
    """Counts what each key names and says when a line of it is due (thread-safe)."""

    def __init__(self, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._lines: dict[str, tuple[float, int]] = {}  # key: when last said, counted since
        self._lock = threading.Lock()

    def due(self, key: str, count: int = 1) -> Tally | None:
        """Count ``count`` more of ``key``: what its line says when one is due now (these
        included; the first at once), else None."""
        with self._lock:
            now = self._clock()
            said_at, unsaid = self._lines.get(key, (-math.inf, 0))
            unsaid += count
            if now - said_at < self._interval:
                self._lines[key] = (said_at, unsaid)
                return None
            self._lines[key] = (now, 0)
            return Tally(unsaid, None if math.isinf(said_at) else now - said_at)

    def forget(self, key: str) -> int:
        """How many of ``key`` came since its line was last said; its next is said at once
        (what it counted is over, as an outage that ended)."""
        with self._lock:
            return self._lines.pop(key, (0.0, 0))[1]

    def unsaid(self) -> dict[str, Tally]:
        """What each key counted since its line was last said, for a last line at a stop
        (the log would otherwise never tell); these count as said."""
        with self._lock:
            now = self._clock()
            tallies = {key: Tally(count, now - said_at)
                       for key, (said_at, count) in self._lines.items() if count}
            self._lines.update((key, (now, 0)) for key in tallies)
            return tallies


def log_unsaid(occasional: Occasional, logger: logging.Logger) -> None:
    """At a stop: what each kind counted since its line was last said."""
    for key, tally in sorted(occasional.unsaid().items()):
        logger.warning("not logged before the stop: %s: %s", key, tally)
