"""Addresses searched without regard to case where PostgreSQL's lower() and Python's
str.lower() fold a letter otherwise: a Greek capital sigma (lower() makes every one
the small sigma, Python one ending a word the final sigma). The milter stores the
envelope as the client sent it and the From address lower-cased by Python
(entityheaders.from_address)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from postwarden_policies.entityheaders import from_address
from postwarden_policies.facts import Header
from postwarden_store import connect
from tests.fixtures.adminapp import MintKey, get_json

pytestmark = pytest.mark.postgres

BASE = dt.datetime(2026, 10, 23, 8, 0, tzinfo=dt.UTC)
INSERT = """
INSERT INTO audit_events (event_id, time, instance, queue_id, message_uid, sender, recipients,
    size, action, rules, changes, policy_hash, duration_ms, header_from)
VALUES ($1, $2, 'mx1', $3, $3, $4, $5, 100, 'accept', '{}', '[]', 'h', 1.5, $6)
"""
# queue id -> the address a client sent as sender, recipient and in From
ADDRESSES = {
    "QS1": "ΣΑΣ@example.com",
    "QS2": "σας@example.com",
    "QI1": "İLKER@example.com",
}


def _stored_from(address: str) -> str | None:
    return from_address((Header("From", f"<{address}>", f"<{address}>"),), set())


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url


@pytest.fixture
async def auditor(mint_key: MintKey, database_url: str) -> str:
    conn = await connect(database_url)
    try:
        await conn.execute("SELECT audit_ensure_partition($1)", BASE)
        for i, (queue_id, address) in enumerate(ADDRESSES.items()):
            await conn.execute(INSERT, uuid.uuid4(), BASE + dt.timedelta(minutes=i), queue_id,
                               address, [address], _stored_from(address))
    finally:
        await conn.close()
    return await mint_key(Role.AUDITOR)


async def _found(client: TestClient[Any, Any], key: str, name: str, value: str) -> list[str]:
    status, body = await get_json(client, key, "/api/v1/audit", **{name: value})
    assert status == 200, body
    return sorted(event["queue_id"] for event in body["events"])


@pytest.mark.parametrize("name", ["sender", "recipient", "header_from"])
@pytest.mark.parametrize("value", ["ΣΑΣ@example.com", "σας@example.com", "σασ@example.com",
                                   "Σας@EXAMPLE.com"])
async def test_a_greek_address_is_found_with_either_sigma(
    admin_client: TestClient[Any, Any], auditor: str, name: str, value: str
) -> None:
    assert await _found(admin_client, auditor, name, value) == ["QS1", "QS2"]


@pytest.mark.parametrize("name", ["sender", "recipient", "header_from"])
@pytest.mark.parametrize("value", ["İLKER@example.com", "İlker@example.com",
                                   "i\u0307lker@example.com"])
async def test_an_address_with_a_dotted_capital_i_is_found_as_its_from_shows_it(
    admin_client: TestClient[Any, Any], auditor: str, name: str, value: str
) -> None:
    """The From of QI1 is stored as i and a combining dot above, which lower() leaves
    so: pasted from there into a sender search, it found nothing."""
    assert _stored_from(ADDRESSES["QI1"]) == "i\u0307lker@example.com"
    assert await _found(admin_client, auditor, name, value) == ["QI1"]
