"""Events from the audit log and raise_event, delivered by the worker over real HTTPS."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.webhooks import EventType, raise_event, worker
from postwarden_admin_api.webhooks.signing import verify
from postwarden_admin_api.webhooks.worker import replay

from .conftest import RECEIVER_NAME, StubDns, hook_url
from .receiver import Receiver, Tls, wait_for, wait_for_async
from .support import (
    add_endpoint,
    audit_event,
    delivery_states,
    generate_secret,
    reject_hook,
    running_worker,
    worker_options,
    write_audit,
)

pytestmark = pytest.mark.postgres


async def test_audit_rows_raise_the_right_events(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await add_endpoint(conn, "all", "https://hooks.example.com/", [
            "message.rejected", "message.quarantined", "message.sanitized",
            "message.attachment_stripped"], None, kind="slack")
        await add_endpoint(conn, "named", "https://named.example.com/", [], None, kind="slack")
        await add_endpoint(conn, "off", "https://off.example.com/", ["message.rejected"],
                           None, kind="slack", enabled=False)
    await write_audit(
        pool,
        audit_event("accept"),  # nothing happened: no event
        audit_event("reject"),
        audit_event("quarantine"),
        audit_event("accept", changes=(
            {"kind": "attachment_stripped", "part": "2", "filename": "a.exe"},
            {"kind": "html_sanitized", "part": "1.2", "removed": [["script", 1]]})),
        audit_event("accept", notify=("named",)),
    )
    states = await delivery_states(pool)
    assert sorted((s["name"], s["type"]) for s in states) == [
        ("all", "message.attachment_stripped"), ("all", "message.quarantined"),
        ("all", "message.rejected"), ("all", "message.sanitized"),
        ("named", "message.notify"),
    ]
    rejected = next(s for s in states if s["type"] == "message.rejected")["payload"]
    assert rejected["sender"] == "alice@example.org" and rejected["rules"] == ["block-exe"]
    assert "subject" not in rejected and "client_address" not in rejected


async def test_no_endpoint_no_event_rows(pool: asyncpg.Pool) -> None:
    await write_audit(pool, audit_event("reject"))
    assert await pool.fetchval("SELECT count(*) FROM webhook_events") == 0


async def test_delivery_arrives_signed_and_verifiable(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    secret = generate_secret()
    async with pool.acquire() as conn:
        await add_endpoint(conn, "ops", hook_url(receiver), ["message.rejected"], secret)
    event = audit_event("reject")
    async with running_worker(pool, worker_options(tls, dns)):
        await write_audit(pool, event)
        assert await wait_for(receiver.delivered)
    [got] = receiver.requests
    verify(secret, got.headers, got.body)
    payload = json.loads(got.body)
    assert payload["type"] == "message.rejected"
    assert payload["data"]["queue_id"] == event.queue_id
    assert payload["data"]["recipients"] == ["bob@example.net"]
    assert "quarterly" not in got.body.decode()  # the subject never leaves
    assert receiver.sni == [RECEIVER_NAME]
    [state] = await delivery_states(pool)
    assert (state["status"], state["attempts"]) == ("delivered", 1)


async def test_an_unexpected_error_does_not_end_the_worker(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = worker.deliver_due
    failures: list[str] = []

    async def fails_once(*args: Any, **kwargs: Any) -> int:
        if not failures:
            failures.append("raised")
            raise RuntimeError(hook_url(receiver))  # an error text that quotes a URL
        return await real(*args, **kwargs)

    await reject_hook(pool, "ops", hook_url(receiver))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(worker, "deliver_due", fails_once)
        async with running_worker(pool, worker_options(tls, dns)):
            await write_audit(pool, audit_event("reject"))
            assert await wait_for(receiver.delivered)
    assert failures
    assert "webhook worker: unexpected error (RuntimeError), trying again" in caplog.text
    assert hook_url(receiver) not in caplog.text  # by type only: no text, no traceback


async def test_failing_receiver_gets_the_event_exactly_once_after_retries(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    receiver.statuses = [500, 503, 502]
    async with pool.acquire() as conn:
        await add_endpoint(conn, "flaky", hook_url(receiver), ["message.quarantined"],
                           generate_secret())

    async def recorded() -> bool:  # the worker stores the 200 once it has read it
        return [s["status"] for s in await delivery_states(pool)] == ["delivered"]

    async with running_worker(pool, worker_options(tls, dns)):
        await write_audit(pool, audit_event("quarantine"))
        assert await wait_for(receiver.delivered)
        assert await wait_for_async(recorded)
        [state] = await delivery_states(pool)
    assert [r.status for r in receiver.requests] == [500, 503, 502, 200]
    assert len(receiver.delivered()) == 1
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1  # same id each retry
    assert (state["status"], state["attempts"]) == ("delivered", 4)


async def test_dead_after_max_attempts_then_replayed(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    receiver.statuses = [500, 500]
    async with pool.acquire() as conn:
        endpoint_id = await add_endpoint(conn, "dead", hook_url(receiver),
                                         ["message.rejected"], generate_secret())
    async with running_worker(pool, worker_options(tls, dns, max_attempts=2)):
        await write_audit(pool, audit_event("reject"))

        async def dead() -> bool:
            return [s["status"] for s in await delivery_states(pool)] == ["dead"]

        assert await wait_for_async(dead)
        [state] = await delivery_states(pool)
        async with pool.acquire() as conn:
            assert await replay(conn, endpoint_id, state["id"] + 1000) is None
            new_id = await replay(conn, endpoint_id, state["id"])
        assert new_id is not None
        assert await wait_for(receiver.delivered)
    states = {s["id"]: s["status"] for s in await delivery_states(pool)}
    assert states == {state["id"]: "dead", new_id: "delivered"}
    assert len(receiver.requests) == 3


async def test_stopped_service_loses_no_event(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    await reject_hook(pool, "ops", hook_url(receiver))
    events = [audit_event("reject") for _ in range(5)]
    await write_audit(pool, *events)  # no worker runs: the admin service is down
    assert [s["status"] for s in await delivery_states(pool)] == ["pending"] * 5
    assert receiver.requests == []
    async with running_worker(pool, worker_options(tls, dns)):
        assert await wait_for(lambda: len(receiver.delivered()) == 5)
    queue_ids = sorted(json.loads(r.body)["data"]["queue_id"] for r in receiver.requests)
    assert queue_ids == sorted(e.queue_id or "" for e in events)
    assert {s["status"] for s in await delivery_states(pool)} == {"delivered"}


async def test_two_workers_share_without_duplicates(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    await reject_hook(pool, "ops", hook_url(receiver))
    await write_audit(pool, *(audit_event("reject") for _ in range(30)))
    options = worker_options(tls, dns, batch_size=3)
    async with running_worker(pool, options), running_worker(pool, options):
        assert await wait_for(lambda: len(receiver.requests) >= 30)
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 30


async def test_raise_event_drops_fields_outside_metadata(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    secret = generate_secret()
    async with pool.acquire() as conn:
        await add_endpoint(conn, "ops", hook_url(receiver), ["policy.load_failed"], secret)
        async with conn.transaction():
            event_id = await raise_event(conn, EventType.POLICY_LOAD_FAILED, {
                "instance": "mx1", "error": "inbound.yaml:3: unknown key", "source": "rules: []"})
        assert event_id is not None
        assert await raise_event(conn, EventType.SEND_FAILED, {"id": "x"}) is None  # no taker
    async with running_worker(pool, worker_options(tls, dns)):
        assert await wait_for(receiver.delivered)
    [got] = receiver.requests
    verify(secret, got.headers, got.body)
    assert json.loads(got.body)["data"] == {"instance": "mx1",
                                            "error": "inbound.yaml:3: unknown key"}


async def test_policy_activation_and_send_timeline_raise_events(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await add_endpoint(conn, "ops", "https://hooks.example.com/", [
            "policy.activated", "send.queued", "send.bounced"], None, kind="slack")
        revision = await conn.fetchval(
            "INSERT INTO policy_revisions (policy_name, content_hash, source)"
            " VALUES ('inbound', 'c0ffee', 'rules: []') RETURNING id")
        await conn.execute("INSERT INTO active_policies (policy_name, revision_id, activated_by)"
                           " VALUES ('inbound', $1, 'k1')", revision)
        message = uuid.uuid4()
        await conn.execute(
            "INSERT INTO outbound_messages (id, key_id, message_id, sender, subject,"
            " recipient_count, size, queue_id) VALUES ($1, 'k1', '<s1@x>', 'app@example.org',"
            " 'private subject', 1, 100, '5QID')", message)
        # deferred: an event no endpoint takes (a delivered recipient bounces no more:
        # migration 0041)
        for event in ("accepted", "relayed", "deferred", "bounced"):
            await conn.execute("INSERT INTO outbound_events (message_id, recipient, event)"
                               " VALUES ($1, 'r@example.net', $2)", message, event)
    states = await delivery_states(pool)
    assert [s["type"] for s in states] == ["policy.activated", "send.queued", "send.bounced"]
    assert states[0]["payload"]["content_hash"] == "c0ffee"
    assert states[2]["payload"]["queue_id"] == "5QID"
    assert states[2]["payload"]["recipient"] == "r@example.net"
    assert "private subject" not in json.dumps(states)


async def test_guard_refusal_at_delivery_is_recorded(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls
) -> None:
    """The name now resolves to a private address: refused at delivery, never connected."""
    dns = StubDns({RECEIVER_NAME: [["10.0.0.5"]]})
    await reject_hook(pool, "ops", hook_url(receiver))

    async def failed_once() -> bool:
        return bool(await pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE last_error IS NOT NULL"))

    async with running_worker(pool, worker_options(tls, dns)):
        await write_audit(pool, audit_event("reject"))
        assert await wait_for_async(failed_once)
    error = await pool.fetchval("SELECT last_error FROM webhook_deliveries")
    assert error == "url_not_allowed: private"
    assert receiver.requests == []
