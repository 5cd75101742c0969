"""Addresses searched without regard to case where PostgreSQL's lower() and Python's
str.lower() fold a letter otherwise: a Greek capital sigma (lower() makes every one
the small sigma, Python one ending a word the final sigma) and the dotted capital I
(lower() makes it i, Python i and a combining dot above). The rows are written as the
milter writes them: the envelope as the client sent it, the From address lower-cased
by Python (entityheaders.from_address)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_milter.events import build_event
from postwarden_milter.session import Client, Transaction
from postwarden_policies import AuditEvent
from postwarden_policies.facts import Envelope
from postwarden_policies.mimeparse import parse_message
from postwarden_store import connect
from postwarden_store.audit import write_audit_batch
from postwarden_store.migrations import available_migrations
from tests.admin_api.audit_seed import seeded_auditor
from tests.fixtures.adminapp import MintKey, get_json

pytestmark = pytest.mark.postgres

# queue id -> the address a client sent as sender, recipient and in From
ADDRESSES = {
    "QS1": "ΣΑΣ@example.com",
    "QS2": "σας@example.com",
    "QI1": "İLKER@example.com",
}


def _event(queue_id: str, address: str) -> AuditEvent:
    """The row the milter writes for a message from and to ``address``."""
    txn = Transaction(sender=address, auth_user=None, memory_threshold=1 << 20,
                      max_bytes=None, queue_id=queue_id, smtputf8=True)
    txn.recipients.append(address)
    raw = f"From: <{address}>\r\nSubject: hi\r\n\r\nbody\r\n".encode()
    facts = parse_message(raw, Envelope(sender=address, recipients=(address,)))
    return build_event(instance="mx1", transaction=txn, client=Client("192.0.2.7"),
                       action="accept", reply=None, policy_hash="h", facts=facts)


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url


@pytest.fixture
async def auditor(mint_key: MintKey, database_url: str) -> str:
    return await seeded_auditor(mint_key, database_url, lambda conn: write_audit_batch(
        conn, [_event(*item) for item in ADDRESSES.items()]))


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
                                   "i\u0307lker@example.com", "ilker@example.com"])
async def test_an_address_with_a_dotted_capital_i_is_found_as_its_from_shows_it(
    admin_client: TestClient[Any, Any], auditor: str, name: str, value: str
) -> None:
    """Python lower-cases the From's İ as i and a combining dot above, which lower()
    leaves so: its From was not found by ilker@ (as its sender was), and pasted into a
    sender search that spelling found nothing."""
    assert await _found(admin_client, auditor, name, value) == ["QI1"]


async def test_a_from_stored_with_a_combining_dot_before_0049_is_found_by_i(
    admin_client: TestClient[Any, Any], auditor: str, database_url: str
) -> None:
    """The milter stored the From's İ as i and a combining dot above until it stored an i:
    the search by ``ilker@`` missed the rows written before. Migration 0049 gives them
    the form written now."""
    event = _event("QOLD", "İLKER@example.org")
    [migration] = [m for m in available_migrations()
                   if m.version == "0049_audit_header_from_dotted_i"]
    conn = await connect(database_url)
    try:
        await write_audit_batch(conn, [event])
        await conn.execute("UPDATE audit_events SET header_from = $1 WHERE queue_id = 'QOLD'",
                           "i\u0307lker@example.org")  # as the milter stored it then
        await conn.execute(migration.sql)
    finally:
        await conn.close()
    assert await _found(admin_client, auditor, "header_from", "ilker@example.org") == ["QOLD"]
