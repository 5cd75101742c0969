"""Postfix unreachable, as the relay's workers share it (:mod:`.relay`).

Each worker paused on its own: with Postfix away, the next idle one claimed the
message given back and tried it again at once, so eight workers made eight tries and
eight warnings of each step of a pause meant to grow to a minute. Now one pause holds
them all: no worker claims while it lasts; a failed try grows it once (tries begun
before the pause started belong to it and change nothing), and any success ends it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Unreachable:
    """The pause the relay's workers take while Postfix cannot be reached.

    A worker takes :attr:`step` before it claims, and says how its try went:
    :meth:`failed` with that step, :meth:`reached` when Postfix answered."""

    def __init__(self, pause: Callable[[int], float]) -> None:
        """``pause``: the seconds to wait after so many failed tries in a row."""
        self._pause = pause
        self._failed = 0  # failed tries in a row, each its own step
        self.step = 0  # the pause steps so far
        self._until = 0.0  # when the pause under way ends (monotonic)
        self._reached = asyncio.Event()  # Postfix answered: a pause under way ends

    def failed(self, since: int) -> float | None:
        """A try begun at step ``since`` found Postfix unreachable: the seconds of the
        pause it starts, or None when a try begun since did so (the same outage)."""
        if since != self.step:
            return None
        self.step += 1
        self._failed += 1
        seconds = self._pause(self._failed)
        self._until = time.monotonic() + seconds
        self._reached.clear()
        return seconds

    def reached(self) -> None:
        """Postfix answered a try: the next failure starts from the first pause, and
        the workers pausing claim again at once."""
        self._failed = 0
        self._until = 0.0
        self._reached.set()

    async def paused(self, stopping: asyncio.Event) -> None:
        """Until the pause under way ends (its time, a success, or ``stopping``)."""
        while not stopping.is_set() and (left := self._until - time.monotonic()) > 0:
            await _first(stopping, self._reached, left)


async def _first(one: asyncio.Event, other: asyncio.Event, seconds: float) -> None:
    """Until either event is set, for ``seconds`` at most."""
    waits = [asyncio.ensure_future(one.wait()), asyncio.ensure_future(other.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
