"""A change of an endpoint applies to every request not yet under way, from its answer on.

The worker claims a delivery, then reads the endpoint's settings (URL, secret,
headers, template) under the endpoint's row lock as the request starts; a change
waits for the requests already under way with the old settings (they end within
the timeout), then answers. So no request goes out with an old secret, or to an old
URL, once the change is answered, and none mixes old and new settings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api import app as app_module
from postwarden_admin_api.app import create_app
from postwarden_admin_api.revisions import POLICY_LOCK_KEY
from postwarden_admin_api.settings import ServiceSettings
from postwarden_admin_api.webhooks import WEBHOOK_OPTIONS
from postwarden_admin_api.webhooks.signing import SignatureError, verify
from tests.fixtures.adminapp import AiohttpClient, bearer

from .conftest import RECEIVER_NAME, Start, StubDns
from .receiver import Receiver, Tls, wait_for, wait_for_async
from .support import generate_secret, raise_reject, worker_options

pytestmark = pytest.mark.postgres
Client = TestClient[Any, Any]


class GatedDns(StubDns):
    """The stub, whose lookups wait while ``gate`` is closed: a request under way."""

    def __init__(self) -> None:
        super().__init__({RECEIVER_NAME: [["127.0.0.1"]]})
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = 0

    async def __call__(self, host: str, port: int) -> list[Any]:
        self.waiting += 1
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1
        return await super().__call__(host, port)


@pytest.fixture
def dns() -> GatedDns:
    return GatedDns()


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own, dropped after the service stops."""
    return fresh_database_url


@pytest.fixture
async def other(tls: Tls) -> Any:
    server = Receiver("127.0.0.1", tls)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _url(receiver: Receiver) -> str:
    return f"https://{RECEIVER_NAME}:{receiver.port}/hook"


async def _under_way(dns: GatedDns, database_url: str, requests: int) -> None:
    """An audit event raised whose ``requests`` wait under way, the DNS gate closed."""
    dns.gate.clear()
    await raise_reject(database_url)
    assert await wait_for(lambda: dns.waiting == requests)


async def _create(client: Client, key: str, url: str, secret: str, name: str = "ops"
                  ) -> str:
    response = await client.post("/api/v1/webhooks", headers=bearer(key), json={
        "name": name, "url": url, "secret": secret, "events": ["message.rejected"]})
    assert response.status == 201, await response.text()
    return f"/api/v1/webhooks/{(await response.json())['id']}"


def _signed_with(secret: str, receiver: Receiver, index: int) -> bool:
    got = receiver.requests[index]
    try:
        verify(secret, got.headers, got.body)
    except SignatureError:
        return False
    return True


@pytest.mark.parametrize("field", ["secret", "url"])
async def test_a_change_answers_after_the_requests_under_way_and_none_follows_it(  # noqa: PLR0917
    database_url: str, start: Start, admin_key: str, receiver: Receiver, other: Receiver,
    dns: GatedDns, field: str,
) -> None:
    client = await start()
    old, new = generate_secret(), generate_secret()
    hook = await _create(client, admin_key, _url(receiver), old)
    change = {"secret": new} if field == "secret" else {"url": _url(other)}

    await _under_way(dns, database_url, requests=1)
    patch = asyncio.create_task(client.patch(hook, headers=bearer(admin_key), json=change))
    await asyncio.sleep(0.5)
    dns.gate.set()
    response = await patch
    assert response.status == 200, await response.text()
    # The request under way went out with the old settings, before the answer.
    assert len(receiver.requests) == 1 and _signed_with(old, receiver, 0)

    await raise_reject(database_url)
    new_receiver = receiver if field == "secret" else other
    assert await wait_for(lambda: len(new_receiver.requests) == 1 + (field == "secret"))
    assert _signed_with(new if field == "secret" else old, new_receiver, -1)
    assert len(receiver.requests) == 1 + (field == "secret")  # the old URL got no more


async def test_a_delete_answers_after_the_requests_under_way_and_none_follows_it(
    database_url: str, start: Start, admin_key: str, receiver: Receiver, dns: GatedDns,
) -> None:
    """The DELETE answered at once while a request was under way, which went out after
    the answer: the caller believed nothing more would be sent."""
    client = await start()
    hook = await _create(client, admin_key, _url(receiver), generate_secret())

    await _under_way(dns, database_url, requests=1)
    delete = asyncio.create_task(client.delete(hook, headers=bearer(admin_key)))
    await asyncio.sleep(0.5)
    # Meanwhile the milter's events are written: the wait holds up no audit write.
    async with asyncio.timeout(2):
        await raise_reject(database_url)
    assert not delete.done()
    dns.gate.set()
    response = await delete
    assert response.status == 200, await response.text()
    assert len(receiver.requests) == 1  # before the answer, and none after it
    await asyncio.sleep(0.5)
    assert len(receiver.requests) == 1
    assert (await client.get(hook, headers=bearer(admin_key))).status == 404


# The statements of this test's database waiting for a lock.
LOCK_WAITS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
"""


async def test_waits_for_a_deletes_lock_are_no_database_outage(  # noqa: PLR0917 - fixtures
    database_url: str, start: Start, admin_key: str, receiver: Receiver, dns: GatedDns,
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A request may take longer (webhook_timeout_seconds) than a statement's answer may
    (the pool's command_timeout, 1 s here): the worker's start of a request, held up by
    a delete waiting for the requests under way, was logged as the database unavailable,
    and a PATCH held up too was 503 database_unavailable (here: 404, deleted meanwhile)."""
    monkeypatch.setattr(app_module, "COMMAND_TIMEOUT", 1.0)
    client = await start()
    hook = await _create(client, admin_key, _url(receiver), generate_secret())

    await _under_way(dns, database_url, requests=1)
    delete = asyncio.create_task(client.delete(hook, headers=bearer(admin_key)))
    await asyncio.sleep(0.5)
    await raise_reject(database_url)  # a second delivery, whose start waits for the row
    patch = asyncio.create_task(client.patch(hook, headers=bearer(admin_key),
                                             json={"events": ["message.rejected"]}))

    async def both_wait() -> bool:
        return await pool.fetchval(LOCK_WAITS) == 2

    assert await wait_for_async(both_wait)
    await asyncio.sleep(1.5)  # past the command timeout
    assert not delete.done() and not patch.done()
    dns.gate.set()
    assert (await delete).status == 200
    response = await patch
    assert response.status == 404, await response.text()
    assert len(receiver.requests) == 1
    assert not [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]


# The policy lock held (a webhook delete's, waiting for the requests under way).
# The policy lock's (a bigint key: its halves, objsubid 1), not the relay's claim token.
POLICY_LOCK_HELD = """
SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
WHERE d.datname = current_database() AND l.locktype = 'advisory' AND l.granted
  AND l.objsubid = 1 AND (l.classid::bigint << 32 | l.objid::bigint) = $1
"""
POLICY = ("version: 1\nname: {0}\nrules:\n"
          "  - name: r\n    when:\n      sender: [{0}@evil.test]\n    then: reject\n")


async def _upload(client: Client, key: str, name: str) -> Any:
    return await client.post("/api/v1/policies", data=POLICY.format(name).encode(),
                             headers={**bearer(key), "Content-Type": "application/yaml"})


def _policy_change(client: Client, key: str, change: str, revision_id: int) -> Any:
    if change == "activate":
        return client.post(f"/api/v1/revisions/{revision_id}/activate", headers=bearer(key))
    if change == "deploy":
        return client.post("/api/v1/policies/deploy", headers=bearer(key),
                           json={"activate": [revision_id]})
    if change == "upload":
        return _upload(client, key, "uploaded")
    rule = {"name": "r", "when": {"sender": ["r@evil.test"]}, "then": "reject"}
    return client.post("/api/v1/rules", headers=bearer(key), json={"rule": rule})


@pytest.mark.parametrize("change", ["activate", "deploy", "upload", "rule"])
async def test_policy_changes_wait_for_a_deletes_lock(  # noqa: PLR0917 - fixtures
    database_url: str, start: Start, admin_key: str, receiver: Receiver, dns: GatedDns,
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, change: str,
) -> None:
    """A delete holds the policy lock while the requests under way end, which may take
    longer (webhook_timeout_seconds) than a statement's answer may (the pool's
    command_timeout, 1 s here): a policy change behind it was 503 database_unavailable,
    the database well. It now waits as the webhook changes behind a delete do."""
    monkeypatch.setattr(app_module, "COMMAND_TIMEOUT", 1.0)
    client = await start()
    hook = await _create(client, admin_key, _url(receiver), generate_secret())
    revision_id = (await (await _upload(client, admin_key, "waits")).json())["id"]

    await _under_way(dns, database_url, requests=1)
    delete = asyncio.create_task(client.delete(hook, headers=bearer(admin_key)))

    async def delete_holds_the_lock() -> bool:
        return bool(await pool.fetchval(POLICY_LOCK_HELD, POLICY_LOCK_KEY) == 1)

    assert await wait_for_async(delete_holds_the_lock)
    changed = asyncio.create_task(_policy_change(client, admin_key, change, revision_id))

    async def change_waits() -> bool:
        return bool(await pool.fetchval(LOCK_WAITS) == 1)

    assert await wait_for_async(change_waits)
    await asyncio.sleep(1.5)  # past the command timeout
    assert not changed.done()
    dns.gate.set()
    assert (await delete).status == 200
    response = await changed
    assert response.status in {200, 201}, await response.text()


async def test_deletes_waiting_together_leave_the_worker_a_connection(  # noqa: PLR0917
    database_url: str, aiohttp_client: AiohttpClient, admin_settings: ServiceSettings,
    tls: Tls, dns: GatedDns, admin_key: str, receiver: Receiver,
) -> None:
    """Two DELETEs with a pool of two connections: the one waiting for its request under
    way held one, the other (queued behind it for the policy lock) the other, and the
    worker found none to record the request's end: the DELETE waited out the request's
    whole lease (here 90 s), holding the other webhook and policy changes meanwhile."""
    app = create_app(dataclasses.replace(admin_settings, pool_min_size=1, pool_max_size=2))
    app[WEBHOOK_OPTIONS] = worker_options(tls, dns, timeout_seconds=60.0)
    client = await aiohttp_client(app)
    hooks = [await _create(client, admin_key, _url(receiver), generate_secret(), name)
             for name in ("ops", "sec")]

    await _under_way(dns, database_url, requests=2)  # one delivery to each
    deletes = [asyncio.create_task(client.delete(hook, headers=bearer(admin_key)))
               for hook in hooks]
    await asyncio.sleep(0.5)
    dns.gate.set()
    done, _ = await asyncio.wait(deletes, timeout=20)
    assert len(done) == 2
    assert [(await delete).status for delete in deletes] == [200, 200]
    assert len(receiver.requests) == 2


async def _claimed_during(client: Client, pool: asyncpg.Pool, database_url: str, hook: str,
                          *, key: str, change: dict[str, Any]) -> None:
    """PATCH ``change`` while a delivery is claimed: the change holds the endpoint's row
    until it commits (held here before its audit entry), and nothing is sent meanwhile."""
    # Held (a Retry-After) until the change has written the endpoint.
    await pool.execute("UPDATE webhook_endpoints SET held_until = now() + interval '1 s'")
    await raise_reject(database_url)
    async with pool.acquire() as blocker, blocker.transaction():
        await blocker.execute("LOCK TABLE admin_audit IN EXCLUSIVE MODE")
        patch = asyncio.create_task(client.patch(hook, headers=bearer(key), json=change))

        async def claimed() -> bool:
            return await pool.fetchval("SELECT attempts FROM webhook_deliveries") == 1

        assert await wait_for_async(claimed)
        await asyncio.sleep(0.3)
        assert not patch.done()
    response = await patch
    assert response.status == 200, await response.text()


async def test_a_delivery_claimed_before_a_change_is_sent_with_the_new_settings(  # noqa: PLR0917
    database_url: str, start: Start, admin_key: str, receiver: Receiver, other: Receiver,
    pool: asyncpg.Pool,
) -> None:
    """It waits for the change, then reads the new URL and secret together."""
    client = await start()
    new = generate_secret()
    hook = await _create(client, admin_key, _url(receiver), generate_secret())
    await _claimed_during(client, pool, database_url, hook, key=admin_key,
                          change={"url": _url(other), "secret": new})
    assert await wait_for(lambda: len(other.requests) == 1)
    assert _signed_with(new, other, 0) and not receiver.requests
    assert json.loads(other.requests[0].body)["type"] == "message.rejected"


async def test_a_delivery_claimed_before_a_disable_is_not_sent_nor_counted(
    database_url: str, start: Start, admin_key: str, receiver: Receiver, pool: asyncpg.Pool,
) -> None:
    client = await start()
    hook = await _create(client, admin_key, _url(receiver), generate_secret())
    await _claimed_during(client, pool, database_url, hook, key=admin_key,
                          change={"enabled": False})
    await asyncio.sleep(0.5)
    assert not receiver.requests
    row = await pool.fetchrow("SELECT status, attempts, last_attempt_at, sending_since"
                              " FROM webhook_deliveries")
    assert dict(row) == {"status": "pending", "attempts": 0, "last_attempt_at": None,
                         "sending_since": None}
    enabled = await client.patch(hook, headers=bearer(admin_key), json={"enabled": True})
    assert enabled.status == 200, await enabled.text()
    assert await wait_for(lambda: len(receiver.delivered()) == 1)


async def test_rotations_while_deliveries_flow_never_sign_with_a_replaced_secret(
    database_url: str, start: Start, admin_key: str, receiver: Receiver, pool: asyncpg.Pool,
) -> None:
    """Every request that arrives after a rotation is answered is signed with that secret
    or a later one; each delivery arrives, signed with one of them."""
    receiver.delay_seconds = 0.2  # two requests under way at most times
    client = await start()
    rotated = [generate_secret()]
    hook = await _create(client, admin_key, _url(receiver), rotated[0])
    for _ in range(12):
        await raise_reject(database_url)
    arrived_before = [0]  # requests arrived when each secret's change was answered
    for _ in range(4):
        await asyncio.sleep(0.15)
        rotated.append(generate_secret())
        response = await client.patch(hook, headers=bearer(admin_key),
                                      json={"secret": rotated[-1]})
        assert response.status == 200, await response.text()
        arrived_before.append(len(receiver.requests))
    assert await wait_for(lambda: len(receiver.delivered()) == 12)
    for index in range(len(receiver.requests)):
        signed = [k for k, secret in enumerate(rotated) if _signed_with(secret, receiver, index)]
        newest_answered = max(k for k, n in enumerate(arrived_before) if n <= index)
        assert signed and signed[0] >= newest_answered, (index, signed, arrived_before)

    async def none_sending() -> bool:  # the worker clears the mark once it read the answer
        return await pool.fetchval("SELECT count(*) FROM webhook_deliveries"
                                   " WHERE sending_since IS NOT NULL") == 0

    assert await wait_for_async(none_sending)
