"""The lease of a batch of outbox rows a relay worker claimed.

A task of the batch's own renews the lease of its rows not yet settled, while a
message is submitted too, often enough that it always lasts ``keep`` longer
while renewals succeed: a row whose lease ran out would be claimed and sent
again by another worker. A submit starts only while the lease lasts longer than
the submit may (:meth:`BatchLease.covers`, renewing it at once when it would
not), so one under way when renewals begin to fail (Postgres away, a network
partition) ends before another worker can claim its row. Once a renewal fails,
the lease can no longer be proven, and the relay sends no further row of the batch.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from postwarden_admin_api.periodic import stop_task, surviving


class _Row(Protocol):
    @property
    def id(self) -> uuid.UUID: ...


R = TypeVar("R", bound=_Row)


class BatchLease(Generic[R]):
    """Renews ``rows`` for ``seconds`` at a time until each is settled or lost."""

    def __init__(self, renew: Callable[[list[R]], Awaitable[set[uuid.UUID]]], rows: list[R],
                 *, since: float, seconds: float, retry_seconds: float,
                 keep: float = 0.0) -> None:
        """``renew``: the rows still this claim's get a new lease; returns the others
        (lost). ``since``: when the claim was sent (monotonic). ``retry_seconds``: the
        longest pause before a failed renewal is tried again. ``keep``: how much longer
        than now the lease is to last at any time while renewals succeed."""
        if keep >= seconds:
            raise ValueError(f"a lease of {seconds} s cannot last {keep} s more at any time")
        self._renew = renew
        self._seconds = seconds
        # Renewed twice within what the lease has beyond ``keep``: one late renewal
        # (a busy event loop) still leaves it as long.
        self._every = min(seconds / 3, (seconds - keep) / 2)
        self._retry_seconds = retry_seconds
        self._pending = list(rows)  # renewed until settled or lost
        self.lost: set[uuid.UUID] = set()  # claimed again by another worker meanwhile
        self._until = since + seconds  # when the last lease set runs out
        self._failing = False  # the last renewal failed: the lease cannot be proven
        self._ended = False
        self._renewing = asyncio.Lock()  # held while a renewal is in flight
        self._task = asyncio.create_task(self._keep(), name="postwarden-relay-lease")

    def proven(self, seconds: float = 0.0) -> bool:
        """Whether the rows neither settled nor lost are still provably this claim's,
        for ``seconds`` more at least, were no renewal to succeed meanwhile."""
        return not self._failing and time.monotonic() + seconds < self._until

    async def covers(self, seconds: float) -> bool:
        """Whether the rows neither settled nor lost stay provably this claim's for
        ``seconds`` more, were no renewal to succeed meanwhile; renewed at once when
        they would not (:attr:`lost` then names those claimed again meanwhile)."""
        if self.proven(seconds):
            return True
        async with self._renewing:
            if not self.proven(seconds):  # a renewal just done may have seen to it
                await self._renew_now()
        return self.proven(seconds)

    async def settle(self, row: R) -> None:
        """Renew ``row`` no more, once a renewal in flight is done: its outcome is
        stored next, and a renewal after a retry's would put that retry off."""
        async with self._renewing:
            self._pending = [r for r in self._pending if r is not row]

    async def release(self) -> None:
        """Stop renewing once a renewal in flight is done: rows given back next must
        not be leased again."""
        async with self._renewing:
            await self.stop()

    async def stop(self) -> None:
        """Stop renewing at once (a renewal in flight is cancelled)."""
        self._ended = True  # in case asyncpg turns the cancellation into an error
        await stop_task(self._task)

    async def _keep(self) -> None:
        while not self._ended:
            await asyncio.sleep(min(self._every, self._retry_seconds) if self._failing
                                else self._every)
            async with self._renewing:
                await self._renew_now()

    async def _renew_now(self) -> None:
        """Renew the rows pending; held ``_renewing``."""
        renewed = False
        with surviving("relay: renewing a lease"):
            await self._renew_pending()
            renewed = True
        self._failing = not renewed

    async def _renew_pending(self) -> None:
        started = time.monotonic()  # the query's now() is no earlier: its lease ends later
        if self._pending:
            self.lost |= await self._renew(self._pending)
            self._pending = [r for r in self._pending if r.id not in self.lost]
        self._until = started + self._seconds
