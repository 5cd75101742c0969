"""Lines said at most once a minute: on a bad day the same warning, for every refused
MAIL FROM or every dropped batch, would bury everything else in the log. The metrics
count each; the log says each kind when it first happens, then at most once an interval
with how many happened since it was last said."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

INTERVAL = 60.0


class Occasional:
    """Counts what each key names and says when a line of it is due (thread-safe)."""

    def __init__(self, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._lines: dict[str, tuple[float, int]] = {}  # key: when last said, counted since
        self._lock = threading.Lock()

    def due(self, key: str, count: int = 1) -> int | None:
        """Count ``count`` more of ``key``: the total since its line was last said (these
        included) when one is due now, the first at once; else None."""
        with self._lock:
            now = self._clock()
            said_at, unsaid = self._lines.get(key, (-math.inf, 0))
            unsaid += count
            if now - said_at < self._interval:
                self._lines[key] = (said_at, unsaid)
                return None
            self._lines[key] = (now, 0)
            return unsaid
