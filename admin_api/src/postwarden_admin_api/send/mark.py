"""A row's mark as being submitted, kept while its submit runs.

The mark (``outbox.sending_until``, set on the claim token's connection: .claimtoken)
keeps the row from a reclaim by another instance should the token be seen dead. It
lasts a short while, renewed on that connection while the submit runs, so a relay
killed mid-submit holds its row that short while, not the submit's whole bound. A
submit outlives the mark never: it is cut off once the mark cannot be proven to last
(not renewed in time: the token's connection lost, its lock taken by another), its
connection aborted, and taken as an answer lost after the message went out (Postfix's
log decides). The mark's end is reckoned from before the statement that set it was
sent, PostgreSQL's now() being no earlier; a margin covers the clocks' drift and
a busy event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from postwarden_admin_api.periodic import stop_task, surviving

from .claimtoken import Fenced

RETRY_SECONDS = 1.0  # a failed renewal is tried again this soon, while the mark lasts


class SendingMark:
    """``fence`` marks the row being submitted for ``seconds``, from the statement's
    now(); the mark provably lasts until :attr:`until` (loop time)."""

    def __init__(self, fence: Callable[[], Awaitable[Fenced]], *, seconds: float,
                 margin: float) -> None:
        if margin >= seconds:
            raise ValueError(f"a mark of {seconds} s cannot keep a margin of {margin} s")
        self._fence = fence
        self._seconds = seconds
        self._margin = margin
        # Renewed twice within what the mark provably lasts: one renewal late still
        # leaves it time.
        self._every = (seconds - margin) / 3
        self.until = 0.0

    async def make(self) -> Fenced:
        """Mark the row (again); :attr:`until` moves on when it is marked."""
        sent = asyncio.get_running_loop().time()  # the statement's now() is no earlier
        fenced = await self._fence()
        if fenced is Fenced.SENDING:
            self.until = max(self.until, sent + self._seconds - self._margin)
        return fenced

    def lapsed(self) -> bool:
        return asyncio.get_running_loop().time() >= self.until

    @contextlib.asynccontextmanager
    async def kept(self, scope: asyncio.Timeout) -> AsyncIterator[None]:
        """Inside ``scope`` (the submit's bound): cut off by it once the mark may have
        run out, the mark renewed meanwhile. A submit done before the first renewal is
        due costs no statement."""
        bound = scope.when()
        scope.reschedule(self._cut_at(bound))
        keeper = asyncio.create_task(self._keep(scope, bound),
                                     name="postwarden-relay-sending-mark")
        try:
            yield
        finally:
            await stop_task(keeper)

    def _cut_at(self, bound: float | None) -> float:
        return self.until if bound is None else min(bound, self.until)

    async def _keep(self, scope: asyncio.Timeout, bound: float | None) -> None:
        pause = self._every
        while True:
            await asyncio.sleep(pause)
            pause = min(self._every, RETRY_SECONDS)
            with surviving("relay: renewing the mark of a message being submitted"):
                fenced = await self.make()
                # Cut off already, or no longer this claim's: cut off at the mark's end.
                if scope.expired() or fenced is Fenced.LOST:
                    return
                if fenced is Fenced.SENDING:
                    scope.reschedule(self._cut_at(bound))
                    pause = self._every
