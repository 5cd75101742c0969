"""Group commit: what callers hand over while a store runs goes into the next one together.

One store runs at a time, started as soon as the first item arrives: an item waits
for the store under way when it came, if any, then for its own. Each caller waits for
its own item to be stored, as it would for a statement of its own, and gets the
store's error if it failed (to hand the item over again, or give up). Under load
the relay worker's tasks store Postfix's answers this way, several messages in one
round trip and one transaction, where each took a round trip and a transaction of its
own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    def __init__(self, store: Callable[[list[T]], Awaitable[None]]) -> None:
        self._store = store
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._storing: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> None:
        """Return once ``item`` is stored; raise what storing it raised. A caller
        cancelled meanwhile leaves its item to be stored all the same."""
        stored = asyncio.get_running_loop().create_future()
        self._waiting.append((item, stored))
        if self._storing is None:
            self._storing = asyncio.create_task(self._store_waiting())
        await stored

    async def _store_waiting(self) -> None:
        batch: list[tuple[T, asyncio.Future[None]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                error: Exception | None = None
                try:
                    await self._store([item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - each caller gets it
                    error = exc
                for _, stored in batch:
                    if stored.done():  # its caller was cancelled
                        continue
                    if error is None:
                        stored.set_result(None)
                    else:
                        stored.set_exception(error)
        finally:  # cancelled (the loop is closing): no caller waits for good
            self._storing = None
            for _, stored in batch + self._waiting:
                stored.cancel()  # a no-op for those settled
            self._waiting = []
