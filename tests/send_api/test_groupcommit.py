"""Group commit: items handed over while a store runs are stored together next."""

from __future__ import annotations

import asyncio

from postwarden_admin_api.send.groupcommit import GroupCommit


class Store:
    """Records each store's items; the first store waits for ``gate``, the
    ``failing``-th (from 1) raises."""

    def __init__(self, failing: int = 0) -> None:
        self.stores: list[list[int]] = []
        self.gate = asyncio.Event()
        self.failing = failing

    async def __call__(self, items: list[int]) -> None:
        self.stores.append(items)
        if len(self.stores) == 1:
            await self.gate.wait()
        if len(self.stores) == self.failing:
            raise ConnectionResetError("cut off")


async def running(commit: GroupCommit[int], *items: int) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(commit(item)) for item in items]
    await asyncio.sleep(0.01)  # each handed over
    return tasks


async def test_items_handed_over_during_a_store_go_together_in_the_next() -> None:
    store = Store()
    commit = GroupCommit(store)
    (first,) = await running(commit, 1)
    others = await running(commit, 2, 3, 4)
    assert store.stores == [[1]] and not any(t.done() for t in [first, *others])
    store.gate.set()
    await asyncio.gather(first, *others)
    assert store.stores == [[1], [2, 3, 4]]
    await commit(5)  # nothing under way: stored at once, alone
    assert store.stores[-1] == [5]


async def test_each_caller_of_a_failed_store_gets_its_error() -> None:
    store = Store(failing=2)
    commit = GroupCommit(store)
    first = await running(commit, 1)
    failed = await running(commit, 2, 3)
    store.gate.set()
    results = await asyncio.gather(*first, *failed, return_exceptions=True)
    assert results[0] is None
    assert all(isinstance(result, ConnectionResetError) for result in results[1:])
    await asyncio.gather(commit(2), commit(3))  # handed over again
    assert store.stores == [[1], [2, 3], [2, 3]]


async def test_a_cancelled_caller_s_item_is_stored_all_the_same() -> None:
    store = Store()
    commit = GroupCommit(store)
    first = await running(commit, 1)
    cancelled, kept = await running(commit, 2, 3)
    cancelled.cancel()
    store.gate.set()
    await asyncio.gather(*first, kept)
    assert cancelled.cancelled()
    assert store.stores == [[1], [2, 3]]
