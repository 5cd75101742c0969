"""postwarden_store.watch.while_answering: a wait watched by probes of the server."""

from __future__ import annotations

import asyncio

import pytest

from postwarden_store import watch


async def test_a_cancel_landing_while_a_probe_ends_cancels_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wait ends while a probe runs; the probe, cancelled, takes a while to end (a
    statement's cancel waits for the server); the wait's caller is cancelled meanwhile
    (a stop, Ctrl-C). The caller's CancelledError was suppressed as the probe's, and the
    wait returned as if never cancelled: it is cancelled now."""
    monkeypatch.setattr(watch, "PROBE_EVERY_SECONDS", 0.01)
    waited = asyncio.Event()
    probing, probe_ending, probe_ends = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def waiting() -> str:
        await waited.wait()
        return "done"

    async def answers() -> None:
        probing.set()
        try:
            await asyncio.Event().wait()  # no answer yet
        except asyncio.CancelledError:
            probe_ending.set()
            await probe_ends.wait()
            raise

    caller = asyncio.create_task(watch.while_answering(waiting(), answers))
    await asyncio.wait_for(probing.wait(), 10)
    waited.set()  # the wait ends first: the probe is cancelled
    await asyncio.wait_for(probe_ending.wait(), 10)
    caller.cancel()
    probe_ends.set()
    await asyncio.wait({caller}, timeout=10)
    assert caller.cancelled()
