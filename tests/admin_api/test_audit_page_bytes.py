"""A page of the audit search and of the admin audit log is bounded in bytes as well as
in count: events that carry 128 KiB of ``changes`` (or admin log entries that carry a
large settings change) are cut into pages of at most ``PAGE_MAX_BYTES``, one item at
least each; paging through returns every item once, newest first."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api import bodies
from postwarden_admin_api.bodies import PAGE_MAX_BYTES
from postwarden_admin_api.context import Role
from postwarden_store import connect
from tests.fixtures.adminapp import MintKey, bearer

pytestmark = pytest.mark.postgres

BASE = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
LARGE = 120 * 1024  # characters of one item's large field
COUNT = 40  # items of LARGE: past PAGE_MAX_BYTES in all, well under 1000
INSERT_EVENT = """
INSERT INTO audit_events (event_id, time, instance, queue_id, message_uid, sender, recipients,
    size, action, rules, changes, policy_hash, duration_ms)
VALUES ($1, $2, 'mx1', 'QBIG', $3, 'a@example.com', ARRAY['b@example.org'], 100, 'accept',
    ARRAY['r'], $4, 'h', 1.5)
"""


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: the tests count every event and log entry."""
    return fresh_database_url


async def _insert_events(database_url: str, count: int, size: int) -> list[str]:
    """``count`` events of ``size`` characters of changes each, ids newest first."""
    conn = await connect(database_url)
    try:
        ids = []
        for i in range(count):
            event_id, when = uuid.uuid4(), BASE + dt.timedelta(seconds=i)
            await conn.execute("SELECT audit_ensure_partition($1)", when)
            await conn.execute(INSERT_EVENT, event_id, when, f"uid{i}",
                               [{"kind": "note", "text": f"{i:04d}" + "x" * size}])
            ids.append(str(event_id))
    finally:
        await conn.close()
    return ids[::-1]


# path -> (the list's name, the next page's name in the answer, and as a parameter)
PAGED = {
    "/api/v1/audit": ("events", "next_cursor", "cursor"),
    "/api/v1/admin-audit": ("entries", "next_before", "before"),
}


async def _walk(client: TestClient[Any, Any], key: str, path: str, **params: str
                ) -> tuple[list[dict[str, Any]], list[int]]:
    """Every item of every page, and each page's size in bytes."""
    items, next_name, next_param = PAGED[path]
    found: list[dict[str, Any]] = []
    sizes: list[int] = []
    following: Any = None
    while True:
        query = {**params, **({next_param: str(following)} if following is not None else {})}
        response = await client.get(path, headers=bearer(key), params=query)
        assert response.status == 200
        raw = await response.read()
        page = json.loads(raw)
        assert page[items], "a page with no item never advances"
        found += page[items]
        sizes.append(len(raw))
        following = page[next_name]
        if following is None:
            return found, sizes


async def test_an_audit_search_page_is_bounded_in_bytes(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str
) -> None:
    ids = await _insert_events(database_url, COUNT, LARGE)
    key = await mint_key(Role.AUDITOR)
    events, sizes = await _walk(admin_client, key, "/api/v1/audit", limit="1000")
    assert [e["event_id"] for e in events] == ids  # each once, newest first
    assert len(sizes) > 1
    assert max(sizes) <= PAGE_MAX_BYTES + 1024  # the page's own few bytes besides
    assert events[0]["changes"][0]["text"].startswith(f"{COUNT - 1:04d}xxx")


async def test_an_event_alone_past_the_budget_is_a_page_of_its_own(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bodies, "PAGE_MAX_BYTES", 1000)
    ids = await _insert_events(database_url, 3, 2000)
    key = await mint_key(Role.AUDITOR)
    events, sizes = await _walk(admin_client, key, "/api/v1/audit")
    assert [e["event_id"] for e in events] == ids
    assert len(sizes) == 3


async def test_an_admin_log_page_is_bounded_in_bytes(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str
) -> None:
    conn: asyncpg.Connection = await connect(database_url)
    try:
        for i in range(COUNT):
            await conn.execute(
                "INSERT INTO admin_audit (action, target, summary) "
                "VALUES ('settings.changed', $1, $2)",
                f"t{i}", {"allowed_sender_addresses": [f"{i:04d}" + "x" * LARGE]})
    finally:
        await conn.close()
    key = await mint_key(Role.AUDITOR)
    entries, sizes = await _walk(admin_client, key, "/api/v1/admin-audit", limit="1000",
                                 action="settings.changed")
    assert [e["target"] for e in entries] == [f"t{i}" for i in reversed(range(COUNT))]
    assert len(sizes) > 1
    assert max(sizes) <= PAGE_MAX_BYTES + 1024
