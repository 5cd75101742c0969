"""The enqueue transaction, the atomic counters and idempotency records, on real Postgres."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.errors import ApiError
from postwarden_admin_api.send import _housekeeping, idempotency
from postwarden_admin_api.send.limits import (
    LimitReached,
    Limits,
    purge_windows,
    stored_hash_key,
)
from postwarden_admin_api.send.outbox import ENQUEUE, Accepted, Unconfirmed, confirm, enqueue
from postwarden_store import connect
from tests.conftest import PgServer
from tests.fixtures.clocks import shifted_datetime
from tests.fixtures.postgres import durable_commits_hang
from tests.fixtures.submissions import ROOMY, submission


async def count(pool: asyncpg.Pool, sql: str, *args: object) -> int:
    value: int = await pool.fetchval(sql, *args)
    return value


async def test_enqueue_writes_message_recipients_and_outbox(pool: asyncpg.Pool) -> None:
    key = uuid.uuid4().hex
    async with pool.acquire() as conn:
        accepted = await enqueue(
            conn, submission(key, "a@example.org", "B@example.org"), ROOMY)
    row = await pool.fetchrow("SELECT * FROM outbound_messages WHERE id = $1", accepted.id)
    assert row["status"] == "queued" and row["recipient_count"] == 2
    assert row["message_id"] == accepted.message_id
    outbox = await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", accepted.id)
    assert outbox["recipients"] == ["a@example.org", "B@example.org"]
    assert outbox["envelope_from"] == "app@example.com"
    usage = await pool.fetchrow("SELECT * FROM outbound_daily_usage WHERE key_id = $1", key)
    assert (usage["messages"], usage["recipients"]) == (1, 2)
    subjects = await pool.fetch(
        "SELECT subject FROM outbound_rate_counters WHERE scope = 'recipient_day'"
    )
    assert all("@" not in r["subject"] for r in subjects)


async def test_one_address_in_two_cases_is_one_recipient(pool: asyncpg.Pool) -> None:
    key = uuid.uuid4().hex
    async with pool.acquire() as conn:
        accepted = await enqueue(
            conn, submission(key, "Bob@example.org", "bob@example.org"), ROOMY)
    row = await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", accepted.id)
    assert row["recipients"] == ["Bob@example.org"]
    assert await count(
        pool, "SELECT count(*) FROM outbound_recipients WHERE message_id = $1", accepted.id
    ) == 1
    usage = await pool.fetchrow("SELECT * FROM outbound_daily_usage WHERE key_id = $1", key)
    assert (usage["messages"], usage["recipients"]) == (1, 1)


async def test_a_hundred_concurrent_requests_never_pass_a_limit_of_forty(
    pool: asyncpg.Pool,
) -> None:
    key = uuid.uuid4().hex
    limits = Limits(per_key_per_minute=40, per_recipient_per_day=1000, per_key_per_day=1000)

    async def one(n: int) -> str:
        async with pool.acquire() as conn:
            try:
                await enqueue(conn, submission(key, f"r{n}@example.org"), limits)
            except LimitReached as reached:
                return reached.refusal.code
        return "accepted"

    results = await asyncio.gather(*(one(n) for n in range(100)))
    assert results.count("accepted") == 40
    assert set(results) == {"accepted", "rate_limited"}
    stored = await count(pool, "SELECT count(*) FROM outbound_messages WHERE key_id = $1", key)
    assert stored == 40
    assert await count(pool, "SELECT count(*) FROM outbox o JOIN outbound_messages m "
                             "ON m.id = o.message_id WHERE m.key_id = $1", key) == 40


async def test_recipient_and_daily_limits(pool: asyncpg.Pool) -> None:
    key = uuid.uuid4().hex
    limits = Limits(per_key_per_minute=100, per_recipient_per_day=2, per_key_per_day=3)
    target = f"{uuid.uuid4().hex[:8]}@example.org"
    async with pool.acquire() as conn:
        for _ in range(2):
            await enqueue(conn, submission(key, target), limits)
        with pytest.raises(LimitReached) as caught:
            await enqueue(conn, submission(key, target, "other@example.org"), limits)
        assert caught.value.refusal.code == "recipient_rate_limited"
        # the refused message moved no counter: "other" was counted and rolled back
        await enqueue(conn, submission(key, "other@example.org"), limits)
        with pytest.raises(LimitReached) as caught:
            await enqueue(conn, submission(key, "third@example.org"), limits)
        assert caught.value.refusal.code == "daily_quota_exceeded"
        assert abs(caught.value.retry_after - await conn.fetchval(DAY_LEFT)) <= 2
        await conn.execute(DAY_OVER, key)  # the database's day has ended
        await enqueue(conn, submission(key, "third@example.org"), limits)
    assert await count(pool, "SELECT count(*) FROM outbound_messages WHERE key_id = $1", key) == 4


# Seconds until the database's day (UTC) ends; its windows as if that day were over.
DAY_LEFT = "SELECT ceil(extract(epoch FROM date_trunc('day', now(), 'UTC') + '1 day' - now()))"
DAY_OVER = "UPDATE outbound_daily_usage SET day = day - 1 WHERE key_id = $1"


@pytest.mark.parametrize("behind", [dt.timedelta(days=1), dt.timedelta(minutes=1)],
                         ids=["a-day", "a-minute"])
async def test_instances_whose_clocks_differ_count_in_the_same_windows(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, behind: dt.timedelta
) -> None:
    """Each instance counted in its host's windows: one a day (or a minute) behind
    another gave every recipient its day's limit (every key its minute's) again."""
    key, target = uuid.uuid4().hex, f"{uuid.uuid4().hex[:8]}@example.org"
    limits = Limits(per_key_per_minute=1, per_recipient_per_day=1, per_key_per_day=1)
    async with pool.acquire() as conn:
        await enqueue(conn, submission(key, target), limits)
        monkeypatch.setattr(dt, "datetime", shifted_datetime(-behind))  # the other host
        # Each limit in turn (raising those checked before it).
        for change, code in [({}, "recipient_rate_limited"),
                             ({"per_recipient_per_day": 2}, "rate_limited"),
                             ({"per_recipient_per_day": 2, "per_key_per_minute": 2},
                              "daily_quota_exceeded")]:
            with pytest.raises(LimitReached) as caught:
                await enqueue(conn, submission(key, target), replace(limits, **change))
            assert caught.value.refusal.code == code
        windows = await conn.fetch("SELECT scope, window_start FROM outbound_rate_counters "
                                   "WHERE subject = ANY($1)", [key, *submission(key, target)
                                                               .recipient_hashes])
        database = await conn.fetchrow("SELECT date_trunc('minute', now(), 'UTC') AS minute, "
                                       "date_trunc('day', now(), 'UTC') AS day")
    assert {w["scope"]: w["window_start"] for w in windows} == {
        "key_minute": database["minute"], "recipient_day": database["day"]}
    assert await count(pool, "SELECT count(*) FROM outbound_messages WHERE key_id = $1", key) == 1


async def test_minute_window_retry_after(pool: asyncpg.Pool) -> None:
    key = uuid.uuid4().hex
    limits = Limits(per_key_per_minute=1, per_recipient_per_day=100, per_key_per_day=100)
    async with pool.acquire() as conn:
        await enqueue(conn, submission(key, "a@example.org"), limits)
        with pytest.raises(LimitReached) as caught:
            await enqueue(conn, submission(key, "a@example.org"), limits)
    assert caught.value.refusal.code == "rate_limited"
    assert 1 <= caught.value.retry_after <= 60  # the rest of the database's minute


async def test_idempotency_claim_replay_conflict_and_release(pool: asyncpg.Pool) -> None:
    key_id, key = uuid.uuid4().hex, "order-1"
    digest = idempotency.request_digest({"a": 1, "b": [1, 2]})
    assert digest == idempotency.request_digest({"b": [1, 2], "a": 1})
    mine = uuid.uuid4()
    async with pool.acquire() as conn:
        assert await idempotency.claim(conn, key_id, key, digest, mine) is None
        with pytest.raises(ApiError) as running:
            await idempotency.claim(conn, key_id, key, digest, uuid.uuid4())
        assert (running.value.status, running.value.code) == (
            409, "idempotency_request_in_progress"
        )
        with pytest.raises(ApiError) as reused:
            await idempotency.claim(conn, key_id, key, b"x" * 32, uuid.uuid4())
        assert (reused.value.status, reused.value.code) == (422, "idempotency_key_reused")
        await enqueue(
            conn, submission(key_id, "a@example.org", idem=key, claim=mine), ROOMY)
        stored = await idempotency.claim(conn, key_id, key, digest, uuid.uuid4())
        assert stored is not None and stored.status == 202
        assert stored.body == {"id": str(mine), "message_id": stored.body["message_id"],
                               "status": "queued"}
        other, again = "order-2", uuid.uuid4()
        assert await idempotency.claim(conn, key_id, other, digest, again) is None
        await idempotency.release(conn, key_id, other, again)
        assert await idempotency.claim(conn, key_id, other, digest, uuid.uuid4()) is None


async def test_a_claim_taken_over_fences_out_the_request_that_held_it(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request stalled past STALE_CLAIM and its client retried: only one sends."""
    key_id, key = uuid.uuid4().hex, "order-stalled"
    digest = idempotency.request_digest({"a": 1})
    first, retry = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn:
        assert await idempotency.claim(conn, key_id, key, digest, first) is None
        monkeypatch.setattr(idempotency, "STALE_CLAIM", dt.timedelta(0))
        assert await idempotency.claim(conn, key_id, key, digest, retry) is None  # taken over
        with pytest.raises(ApiError) as fenced:  # the stalled request goes on, too late
            await enqueue(conn, submission(key_id, "a@example.org", idem=key, claim=first),
                          ROOMY)
        assert (fenced.value.status, fenced.value.code) == (
            409, "idempotency_request_in_progress")
        await idempotency.release(conn, key_id, key, first)  # leaves the retry's claim alone
        await enqueue(conn, submission(key_id, "a@example.org", idem=key, claim=retry),
                      ROOMY)
    sent = await pool.fetch("SELECT id FROM outbound_messages WHERE key_id = $1", key_id)
    assert [row["id"] for row in sent] == [retry]


async def test_the_hash_key_is_made_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        first = await stored_hash_key(conn)
        assert await stored_hash_key(conn) == first
    assert len(first) == 32


async def test_housekeeping_drops_ended_windows_and_old_records(pool: asyncpg.Pool) -> None:
    key = uuid.uuid4().hex
    claim = uuid.uuid4()
    async with pool.acquire() as conn:
        await idempotency.claim(conn, key, "old", idempotency.request_digest({}), claim)
        await enqueue(conn, submission(key, "old@example.org", idem="old", claim=claim),
                      ROOMY)
        await conn.execute(
            "UPDATE send_idempotency SET created_at = now() - interval '2 days' "
            "WHERE key_id = $1", key,
        )
        await conn.execute("UPDATE outbound_rate_counters SET window_start = window_start "
                           "- interval '3 days' WHERE subject = $1", key)
        await purge_windows(conn)
        await idempotency.purge(conn)
    assert await count(pool, "SELECT count(*) FROM outbound_rate_counters WHERE subject = $1 "
                             "OR window_start < now() - interval '2 days'", key) == 0
    assert await count(pool, "SELECT count(*) FROM send_idempotency WHERE key_id = $1", key) == 0


@pytest.mark.parametrize("days", [400, -3])
async def test_housekeeping_drops_no_window_either_clock_still_counts_in(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, days: int
) -> None:
    # A host clock a year ahead for one round dropped today's counters: every recipient
    # could have its day's limit of messages again. A host clock days behind the
    # database's counts in windows that are days old by the database's.
    offset = dt.timedelta(days=days)
    key = uuid.uuid4().hex
    sent = submission(key, f"{key}@example.org")
    monkeypatch.setattr(dt, "datetime", shifted_datetime(offset))
    async with pool.acquire() as conn:
        await enqueue(conn, sent, ROOMY)
        await _housekeeping(conn)
    assert await count(pool, "SELECT count(*) FROM outbound_rate_counters WHERE subject = $1 "
                             "OR subject = $2", sent.key_id, *sent.recipient_hashes) == 2


async def waiting_on(admin_dsn: str, conn: asyncpg.Connection, statement: str,
                     event: str = "SyncRep") -> None:
    """Until ``conn``'s backend waits in ``statement`` on ``event`` (SyncRep: for the
    disk; transactionid: for another transaction's row); fails at once when it waits on
    a lock while it should wait for the disk."""
    admin = await asyncpg.connect(admin_dsn)
    row = None
    try:
        async with asyncio.timeout(10):
            while row is None or (row["wait_event"], row["query"]) != (event, statement):
                await asyncio.sleep(0.02)
                row = await admin.fetchrow(
                    "SELECT wait_event_type, wait_event, query FROM pg_stat_activity "
                    "WHERE pid = $1", conn.get_server_pid())
                assert event != "SyncRep" or row["wait_event_type"] != "Lock", (
                    f"waits on a lock in {row['query']}")
    except TimeoutError:
        raise AssertionError(f"not waiting in {statement!r} but: {dict(row or {})}") from None
    finally:
        await admin.close()


async def test_one_key_s_sends_do_not_queue_behind_each_other_s_disk_flush(
    database_url: str, pg_server: PgServer
) -> None:
    """The key's usage counters stay locked until the enqueue commits. That commit does
    not wait for the disk; the second transaction of the same call does, with nothing
    locked, and only then is the message accepted. Here durable commits never end, so
    where each send waits shows: both for the disk. Before, the first waited with its
    counters locked, and the second waited on its lock."""
    key = f"hot-{uuid.uuid4().hex[:8]}"
    conns = [await connect(database_url) for _ in range(2)]
    for conn in conns:
        await conn.execute("SET synchronous_commit = on")  # the tests' server has it off
    sends: list[asyncio.Task[Any]] = []
    try:
        async with durable_commits_hang(pg_server.admin_dsn):
            for n, conn in enumerate(conns):
                sends.append(asyncio.create_task(
                    enqueue(conn, submission(key, f"r{n}@example.org"), ROOMY)))
                await waiting_on(pg_server.admin_dsn, conn, ENQUEUE)
            assert not any(send.done() for send in sends)
            admin = await asyncpg.connect(pg_server.admin_dsn)
            try:  # ends the waits; the commits stand
                await admin.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                                    "WHERE pid = ANY($1::int[])",
                                    [conn.get_server_pid() for conn in conns])
            finally:
                await admin.close()
            accepted = await asyncio.gather(*sends)
    finally:
        for send in sends:
            send.cancel()
        for conn in conns:
            conn.terminate()
    assert len({a.id for a in accepted}) == 2


async def test_a_connection_lost_while_waiting_for_the_disk_is_confirmed_on_another(
    database_url: str, pg_server: PgServer
) -> None:
    """The message is stored; only its flush is unsure. Answering an error would have a
    client that retries without an Idempotency-Key send it twice: another connection
    finds it stored and flushes (a message not found there, lost in a crash, keeps the
    error)."""
    first, other = await connect(database_url), await connect(database_url)
    try:
        for conn in (first, other):
            await conn.execute("SET synchronous_commit = on")
        async with durable_commits_hang(pg_server.admin_dsn):
            send = asyncio.create_task(enqueue(
                first, submission(uuid.uuid4().hex, "a@example.org"), ROOMY))
            await waiting_on(pg_server.admin_dsn, first, ENQUEUE)
            await other.execute("SELECT pg_terminate_backend($1)", first.get_server_pid())
            with pytest.raises(Unconfirmed) as unsure:
                await send
        accepted = await confirm(other, unsure.value)
        assert accepted == unsure.value.accepted
        assert await other.fetchval("SELECT count(*) FROM outbox WHERE message_id = $1",
                                    accepted.id) == 1
        lost = Unconfirmed(Accepted(uuid.uuid4(), "<lost@example.com>"))
        lost.__cause__ = ConnectionResetError("cut off")
        with pytest.raises(ConnectionResetError):
            await confirm(other, lost)
    finally:
        first.terminate()
        await other.close()


async def test_a_connection_lost_before_the_enqueue_committed_keeps_its_error(
    database_url: str, pg_server: PgServer
) -> None:
    """One call stores the message and waits for the disk, so a failure anywhere in
    it is unsure: another connection looks, and finds nothing stored here (the call
    was cut off while it waited for the key's counters)."""
    key = f"held-{uuid.uuid4().hex[:8]}"
    holder, first, other = [await connect(database_url) for _ in range(3)]
    try:
        async with holder.transaction():  # the key's counters stay locked meanwhile
            await enqueue(holder, submission(key, "a@example.org"), ROOMY)
            send = asyncio.create_task(
                enqueue(first, submission(key, "b@example.org"), ROOMY))
            await waiting_on(pg_server.admin_dsn, first, ENQUEUE, "transactionid")
            await other.execute("SELECT pg_terminate_backend($1)", first.get_server_pid())
            with pytest.raises(Unconfirmed) as unsure:
                await send
            with pytest.raises(asyncpg.ConnectionDoesNotExistError):
                await confirm(other, unsure.value)
    finally:
        first.terminate()
        for conn in (holder, other):
            await conn.close()
