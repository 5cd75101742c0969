"""What the admin log keeps of a settings change: each plain setting's value before and
after, only "<set>" or "<cleared>" for a secret, and the values a change replaced even
while another change is under way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.routes_settings import SETTINGS_LOCK_KEY
from postwarden_admin_api.runtime_settings import apply_changes
from postwarden_admin_api.secrets import Keyring
from postwarden_admin_api.settings import ServiceSettings
from postwarden_store import connect
from tests.fixtures.adminapp import bearer

SECRETS = ("first-relay-secret-3f9a", "second-relay-secret-77c1")


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: the tests read back every settings.changed entry."""
    return fresh_database_url


async def _put(client: TestClient[Any, Any], key: str, changes: dict[str, Any]) -> None:
    response = await client.put("/api/v1/settings", headers=bearer(key), json=changes)
    assert response.status == 200, await response.text()


async def _summaries(client: TestClient[Any, Any], key: str) -> list[Any]:
    """The summaries of the settings.changed entries, oldest first, as an auditor reads
    them from the admin log."""
    response = await client.get("/api/v1/admin-audit", headers=bearer(key),
                                params={"action": "settings.changed"})
    assert response.status == 200
    return [entry["summary"] for entry in reversed((await response.json())["entries"])]


async def test_each_plain_setting_is_logged_with_its_old_and_new_value(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    await _put(admin_client, admin_key, {
        "outbound_max_recipients": 40, "allowed_sender_addresses": ["App@Example.com"],
        "recipient_hash_key": SECRETS[0]})
    await _put(admin_client, admin_key, {
        "outbound_max_recipients": None, "outbound_enabled": True,
        "recipient_hash_key": SECRETS[1]})
    await _put(admin_client, admin_key, {"recipient_hash_key": None})
    assert await _summaries(admin_client, admin_key) == [
        {"outbound_max_recipients": {"old": 50, "new": 40},
         "allowed_sender_addresses": {"old": [], "new": ["app@example.com"]},
         "recipient_hash_key": "<set>"},
        # null: back to the default; true written over the default pins it (a later
        # release's default does not replace it): a change of what is stored
        {"outbound_max_recipients": {"old": 40, "new": 50},
         "outbound_enabled": {"old": True, "new": True},
         "recipient_hash_key": "<set>"},
        {"recipient_hash_key": "<cleared>"},
    ]


async def test_no_secret_value_reaches_the_admin_log(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    """Neither the secret replaced nor the new one, in the table or in the listing."""
    await _put(admin_client, admin_key, {"recipient_hash_key": SECRETS[0]})
    await _put(admin_client, admin_key, {"recipient_hash_key": SECRETS[1],
                                         "outbound_per_key_per_minute": 7})
    listing = await (await admin_client.get("/api/v1/admin-audit",
                                            headers=bearer(admin_key))).text()
    conn = await connect(database_url)
    try:
        stored = await conn.fetchval("SELECT string_agg(summary::text, ' ') FROM admin_audit")
    finally:
        await conn.close()
    assert (await _summaries(admin_client, admin_key))[-1] == {
        "recipient_hash_key": "<set>", "outbound_per_key_per_minute": {"old": 120, "new": 7}}
    for secret in SECRETS:
        assert secret not in stored and secret not in listing


async def _waiting_for_a_lock(conn: Any) -> None:
    for _ in range(500):
        if await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                               "current_database() AND wait_event_type = 'Lock'"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the settings change never waited for the one under way")


async def test_the_old_value_is_the_one_a_concurrent_change_left(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str,
    admin_settings: ServiceSettings,
) -> None:
    """A change that read the old values while another was under way would log those
    the other replaced: the admin log would show 50 -> 40 where 10 was replaced."""
    other, watcher = await connect(database_url), await connect(database_url)
    try:
        transaction = other.transaction()
        await transaction.start()
        # another change under way, as settings_put makes one
        await other.execute("SELECT pg_advisory_xact_lock($1)", SETTINGS_LOCK_KEY)
        await apply_changes(other, Keyring.from_settings(admin_settings),
                            {"outbound_max_recipients": 10}, "other")
        put = asyncio.create_task(_put(admin_client, admin_key, {"outbound_max_recipients": 40}))
        try:
            await _waiting_for_a_lock(watcher)
        finally:
            await transaction.commit()
        await put
    finally:
        await other.close()
        await watcher.close()
    assert await _summaries(admin_client, admin_key) == [
        {"outbound_max_recipients": {"old": 10, "new": 40}}]


async def test_a_change_naming_no_setting_writes_no_entry(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    # A PUT of {} logged "settings.changed" with an empty summary: a change of nothing.
    await _put(admin_client, admin_key, {})
    assert await _summaries(admin_client, admin_key) == []


async def _etag_after(client: TestClient[Any, Any], key: str, etag: str,
                      changes: dict[str, Any]) -> str:
    response = await client.put("/api/v1/settings", json=changes,
                                headers={**bearer(key), "If-Match": etag})
    assert response.status == 200, await response.text()
    return response.headers["ETag"]


async def test_a_value_written_again_is_no_change(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    """It moved the ETag, so that another operator's If-Match failed 412, and logged
    {"old": 40, "new": 40}; of a change naming several, only those that change count."""
    etag = (await admin_client.get("/api/v1/settings", headers=bearer(admin_key))
            ).headers["ETag"]
    etag = await _etag_after(admin_client, admin_key, etag, {"outbound_max_recipients": 40})
    etag = await _etag_after(admin_client, admin_key, etag, {
        "outbound_max_recipients": 40, "outbound_per_key_per_minute": 7})
    for unchanged in ({"outbound_max_recipients": 40, "outbound_per_key_per_minute": 7},
                      {"outbound_per_recipient_per_day": None},  # the default already
                      {"recipient_hash_key": None}):  # unset already
        assert await _etag_after(admin_client, admin_key, etag, unchanged) == etag
    await _put(admin_client, admin_key, {"recipient_hash_key": SECRETS[0]})
    await _put(admin_client, admin_key, {"recipient_hash_key": SECRETS[0]})
    assert await _summaries(admin_client, admin_key) == [
        {"outbound_max_recipients": {"old": 50, "new": 40}},
        {"outbound_per_key_per_minute": {"old": 120, "new": 7}},
        # whether a secret written equals the stored one is not told
        {"recipient_hash_key": "<set>"}, {"recipient_hash_key": "<set>"},
    ]
