"""No value a sender chooses makes Postgres refuse an audit row or stall its batch:
values past what an index entry takes are cut and the row flagged ``truncated``,
``changes`` is bounded in weight, and a write waits at most ``lock_timeout`` for a
lock (retention's DROP of an old partition, queued behind a reader)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import uuid
from typing import Any

import asyncpg
import pytest

from postwarden_store import connect, write_audit_batch
from postwarden_store.audit import (
    CHANGE_TEXT_MAX,
    CHANGES_MAX,
    CHANGES_MAX_BYTES,
    TEXT_MAX,
    TEXT_MAX_BYTES,
    TRUNCATED,
    stored_values,
)
from tests.store.test_audit import make_event

pytestmark = pytest.mark.postgres

RANDOM = secrets.token_urlsafe(8000)  # 10 KB that does not compress
ASTRAL = "\U0001f600" * 3000  # 4 bytes each in UTF-8
CASED = "\u023a" * 3000  # 2 bytes each, 3 once lower-cased


async def _stored(dsn: str, event_id: str) -> asyncpg.Record:
    conn = await connect(dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM audit_events WHERE event_id = $1",
                                  uuid.UUID(event_id))
    finally:
        await conn.close()
    assert row is not None
    return row


async def _write(dsn: str, *events: Any) -> int:
    conn = await connect(dsn)
    try:
        return (await write_audit_batch(conn, list(events))).new
    finally:
        await conn.close()


def _fits(text: str) -> bool:
    return len(text) <= TEXT_MAX and len(text.encode()) <= TEXT_MAX_BYTES


LONG_VALUES = [
    pytest.param("message_id", f"<{RANDOM}@attacker.example>", id="message_id"),
    pytest.param("message_id", ASTRAL, id="message_id-4-byte-characters"),
    pytest.param("sender", f"{RANDOM}@attacker.example", id="sender"),
    pytest.param("sender", f"{CASED}@attacker.example", id="sender-longer-lower-cased"),
    pytest.param("queue_id", RANDOM, id="queue_id"),
    pytest.param("header_from", RANDOM, id="header_from"),
    pytest.param("client_name", RANDOM, id="client_name"),
    pytest.param("helo", RANDOM, id="helo"),
    pytest.param("auth_user", RANDOM, id="auth_user"),
]


@pytest.mark.parametrize(("column", "value"), LONG_VALUES)
async def test_a_value_too_long_for_an_index_is_stored_cut_and_flagged(
    fresh_database_url: str, column: str, value: str
) -> None:
    event = make_event(None, **{column: value})
    after = make_event()
    assert await _write(fresh_database_url, event, after) == 2
    row = await _stored(fresh_database_url, event.event_id)
    assert _fits(row[column])
    assert row[column].endswith("\u2026")
    assert value.startswith(row[column][:-1])
    assert TRUNCATED in row["flags"] and "duplicate" in row["flags"]


@pytest.mark.parametrize("column", ["recipients", "rules"])
async def test_a_long_array_element_is_stored_cut_and_flagged(
    fresh_database_url: str, column: str
) -> None:
    event = make_event(None, **{column: ("short@example.net", RANDOM, CASED)})
    assert await _write(fresh_database_url, event) == 1
    row = await _stored(fresh_database_url, event.event_id)
    assert row[column][0] == "short@example.net"
    assert all(_fits(item) for item in row[column])
    assert TRUNCATED in row["flags"]


async def test_changes_are_bounded_in_names_entries_and_bytes(fresh_database_url: str) -> None:
    # A sender's ~10 MB of stripped .exe names (100 parts, 75 KB names).
    changes = tuple({"kind": "attachment_stripped", "part": f"1.{i}",
                     "filename": secrets.token_urlsafe(75_000) + ".exe", "size": 10,
                     "sha256": "0" * 64, "reason": "strip-exe"} for i in range(100))
    many = tuple({"kind": "attachment_stripped", "part": f"1.{i}", "filename": f"{i}.exe",
                  "size": 1} for i in range(CHANGES_MAX + 500))
    heavy, numerous = make_event(changes=changes), make_event(changes=many)
    assert await _write(fresh_database_url, heavy, numerous) == 2
    heavy_row = await _stored(fresh_database_url, heavy.event_id)
    numerous_row = await _stored(fresh_database_url, numerous.event_id)
    for row in (heavy_row, numerous_row):
        assert TRUNCATED in row["flags"]
        assert len(json.dumps(row["changes"], separators=(",", ":"))) <= CHANGES_MAX_BYTES
    kept = heavy_row["changes"]
    assert kept and all(len(c["filename"]) == CHANGE_TEXT_MAX for c in kept)
    assert [c["part"] for c in kept] == [f"1.{i}" for i in range(len(kept))]  # the first ones
    assert kept[0]["sha256"] == "0" * 64
    assert 0 < len(numerous_row["changes"]) <= CHANGES_MAX


async def test_an_event_within_bounds_is_stored_as_it_is_and_not_flagged(
    fresh_database_url: str,
) -> None:
    # The longest of each: characters, and bytes.
    event = make_event(message_id="<" + "m" * (TEXT_MAX - 4) + "@x>",
                       sender="\U0001f600" * ((TEXT_MAX_BYTES - 2) // 4) + "@x")
    assert await _write(fresh_database_url, event) == 1
    row = await _stored(fresh_database_url, event.event_id)
    assert (row["message_id"], row["sender"]) == (event.message_id, event.sender)
    assert row["flags"] == ["duplicate"]


def test_only_a_cut_adds_the_truncated_flag() -> None:
    event = make_event(message_id="<\x00" + RANDOM + ">", sender=CASED, recipients=(ASTRAL,),
                       changes=({"filename": "\udce9" + RANDOM},))
    assert stored_values(event)["flags"] == ("duplicate", TRUNCATED)
    assert stored_values(make_event(flags=()))["flags"] == ()


async def test_a_write_queued_behind_retentions_drop_gives_up_at_its_lock_timeout(
    fresh_database_url: str,
) -> None:
    dsn = fresh_database_url
    old = make_event(dt.datetime(2020, 1, 10, tzinfo=dt.UTC))
    assert await _write(dsn, old) == 1
    reader, dropper, writer = [await connect(dsn) for _ in range(3)]
    try:
        async with reader.transaction():
            await reader.fetchval("SELECT count(*) FROM audit_events")  # a slow search, say
            drop = asyncio.create_task(dropper.fetch(
                "SELECT audit_drop_partitions_before($1)", dt.datetime(2021, 1, 1, tzinfo=dt.UTC)))
            for _ in range(200):  # until the DROP waits for its lock
                if await reader.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 "
                        "AND wait_event_type = 'Lock'", dropper.get_server_pid()):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the DROP never waited for its lock")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await asyncio.wait_for(write_audit_batch(writer, [make_event()]), 15)
        assert await asyncio.wait_for(drop, 15)  # the reader done, the DROP goes ahead
    finally:
        for conn in (reader, dropper, writer):
            conn.terminate()
