"""A send refused 503 ``database_busy`` for a full pool leaves its ``Idempotency-Key``
free: the same request with the same key, once the pool is free, is sent (202), not
refused 409 ``idempotency_request_in_progress`` for the 5 minutes a stale claim lasts.

The first test fills the pool at a chosen point of the request: the body is large
enough that the named step runs on a worker thread, from where the filler takes every
free connection on the event loop, and holds them until the first answer is in. The
second is the review's case, a locked outbox and many sends at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api import errors
from postwarden_admin_api.app import create_app
from postwarden_admin_api.bodies import LARGE_BODY_BYTES
from postwarden_admin_api.context import POOL
from postwarden_admin_api.send import sending
from postwarden_admin_api.settings import ServiceSettings
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient
from tests.fixtures.scripted_smtp import Scripted

from .conftest import Client, SetRuntime, body

pytestmark = pytest.mark.postgres
POOL_SIZE = 3
FREE_WAIT = 0.3  # seconds the filler waits for one more connection before it stops


@pytest.fixture
async def small_pool_client(
    smtp_server: tuple[Scripted, int], aiohttp_client: AiohttpClient,
    make_admin_settings: Callable[..., ServiceSettings], set_runtime: SetRuntime,
    monkeypatch: pytest.MonkeyPatch,
) -> Client:
    monkeypatch.setattr(errors, "ACQUIRE_TIMEOUT", 0.5)
    await set_runtime(allowed_sender_addresses=["*@example.com"], outbound_enabled=True,
                      outbound_per_key_per_minute=1000)
    settings = make_admin_settings(pool_max_size=POOL_SIZE, relay_host="127.0.0.1",
                                   relay_port=smtp_server[1])
    return await aiohttp_client(create_app(settings))


async def _take_free(pool: asyncpg.Pool, into: list[asyncpg.Connection]) -> None:
    """Every connection the pool can give (the app's workers give theirs back soon)."""
    while True:
        try:
            into.append(await pool.acquire(timeout=FREE_WAIT))
        except TimeoutError:
            return


def _filling_the_pool_in(step: str, pool: asyncpg.Pool, held: list[asyncpg.Connection],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Have ``step`` (a name sending calls, ``module.name`` for one of its modules'), the
    first time it runs (on a worker thread), fill the pool."""
    owner_name, _, name = step.rpartition(".")
    owner = getattr(sending, owner_name) if owner_name else sending
    real = getattr(owner, name)
    loop = asyncio.get_running_loop()
    filled: list[bool] = []

    def step_filling_first(*args: Any) -> Any:
        if not filled:
            filled.append(True)
            asyncio.run_coroutine_threadsafe(_take_free(pool, held), loop).result(30)
        return real(*args)

    monkeypatch.setattr(owner, name, step_filling_first)


@pytest.mark.parametrize(("step", "first_status"), [
    # Before the claim: 503 with nothing claimed.
    pytest.param("idempotency.request_digest", 503, id="full-before-the-claim"),
    # After it: the claim's own connection carries the enqueue (before, the enqueue
    # took another: 503, and the claim had no connection to be released on).
    pytest.param("parse_request", 202, id="full-after-the-claim"),
])
async def test_a_full_pool_leaves_the_key_free_for_the_retry(
    small_pool_client: Client, sender: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    step: str, first_status: int,
) -> None:
    pool = small_pool_client.app[POOL]
    held: list[asyncpg.Connection] = []
    _filling_the_pool_in(step, pool, held, monkeypatch)
    mail = body(subject=f"full pool {uuid.uuid4()}", text="x" * (LARGE_BODY_BYTES + 1))
    headers = {**sender, "Idempotency-Key": f"full-pool-{uuid.uuid4()}"}
    try:
        first = await small_pool_client.post("/api/v1/send-email", json=mail,
                                             headers=headers)
        first_body = await first.json()
    finally:
        for conn in held:
            await pool.release(conn)
    assert held, "the filler took no connection: the pool was never full"
    assert first.status == first_status, first_body
    if first_status == 503:
        assert first_body["error"]["code"] == "database_busy"

    retry = await small_pool_client.post("/api/v1/send-email", json=mail, headers=headers)
    assert retry.status == 202, await retry.json()
    assert ("Idempotent-Replayed" in retry.headers) == (first_status == 202)
    stored = await pool.fetchval(
        "SELECT count(*) FROM outbound_messages WHERE subject = $1", mail["subject"])
    assert stored == 1


async def test_sends_refused_503_behind_a_table_lock_are_sent_on_retry(
    small_pool_client: Client, sender: dict[str, str], database_url: str,
) -> None:
    """The review's case: the outbox locked, 30 sends at once. Those holding the pool
    wait on the lock, the others are refused 503; each retried with its key once the
    lock is gone is sent (202), none refused 409."""
    mails = [(body(subject=f"locked {uuid.uuid4()}"),
              {**sender, "Idempotency-Key": f"locked-{uuid.uuid4()}"}) for _ in range(30)]

    async def send(mail: dict[str, Any], headers: dict[str, str]) -> int:
        response = await small_pool_client.post("/api/v1/send-email", json=mail,
                                                headers=headers)
        return response.status

    locker = await connect(database_url)
    try:
        async with locker.transaction():
            await locker.execute("LOCK outbound_messages")
            sends = [asyncio.ensure_future(send(*mail)) for mail in mails]
            done, _ = await asyncio.wait(sends, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            assert done, "no send was refused while the outbox was locked"
            await asyncio.sleep(errors.ACQUIRE_TIMEOUT * 2)  # the rest find the pool full
        statuses = await asyncio.gather(*sends)
    finally:
        await locker.close()
    assert 503 in statuses and set(statuses) <= {202, 503}, statuses
    retried = [await send(*mail) for mail, status in zip(mails, statuses, strict=True)
               if status == 503]
    assert retried == [202] * len(retried)
