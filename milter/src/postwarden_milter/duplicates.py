"""Re-delivery detection: same Message-ID, same envelope sender, same body.

A bare Message-ID match is never enough (the sender chooses it), so the key
also holds the envelope sender and the SHA-256 of the body. Entries expire
after the window; the table is bounded so a flood of unique messages cannot
grow it without limit (the oldest entries go first).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_ENTRIES = 200_000


class DuplicateDetector:
    def __init__(
        self,
        window_seconds: float,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window_seconds
        self._max = max_entries
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._window > 0

    def seen(self, message_id: str | None, sender: str, body: bytes | memoryview) -> bool:
        """Record this message and say whether it was already seen within the window.

        The body is hashed here, only when the detector is on and the message
        has a Message-ID, so no other message pays for it.
        """
        if not self.enabled or not message_id:
            return False
        key = (message_id.strip().lower(), sender.lower(), hashlib.sha256(body).hexdigest())
        now = self._clock()
        with self._lock:
            self._expire(now)
            first = self._seen.get(key)
            if first is None:
                self._seen[key] = now
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
        return first is not None

    def _expire(self, now: float) -> None:
        # Insertion order is first-seen order, so expired entries sit at the front.
        cutoff = now - self._window
        while self._seen:
            key, first = next(iter(self._seen.items()))
            if first > cutoff:
                break
            del self._seen[key]
