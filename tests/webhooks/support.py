"""Helpers of the delivery tests: endpoints in the database, audit rows, a running worker."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import secrets
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
from yarl import URL

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.secrets import Keyring
from postwarden_admin_api.webhooks.options import WebhookOptions
from postwarden_admin_api.webhooks.signing import SECRET_PREFIX
from postwarden_admin_api.webhooks.ssrf import Guard
from postwarden_admin_api.webhooks.urls import origin
from postwarden_admin_api.webhooks.worker import running
from postwarden_policies.audit import AuditEvent
from postwarden_store import connect
from postwarden_store.audit import write_audit_batch

from .receiver import Tls, wait_for_async

if TYPE_CHECKING:
    from .conftest import StubDns

KEYRING = Keyring(bytes.fromhex("11" * 32))


def generate_secret() -> str:
    """A signing secret as a receiver's owner would give one."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()

INSERT_ENDPOINT = """
INSERT INTO webhook_endpoints
    (name, url_ciphertext, url_origin, kind, events, secret_ciphertext, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
"""


async def add_endpoint(
    conn: asyncpg.Connection, name: str, url: str, events: Sequence[str],
    secret: str | None, *, kind: str = "webhook", enabled: bool = True,
) -> int:
    cipher = None if secret is None else KEYRING.encrypt(secret)
    endpoint_id: int = await conn.fetchval(
        INSERT_ENDPOINT, name, KEYRING.encrypt(url), origin(URL(url)), kind, list(events),
        cipher, enabled,
    )
    return endpoint_id


async def reject_hook(pool: asyncpg.Pool, name: str, url: str) -> int:
    """An endpoint ``name`` at ``url`` for message.rejected, with a fresh secret: its id."""
    async with pool.acquire() as conn:
        return await add_endpoint(conn, name, url, ["message.rejected"], generate_secret())


def audit_event(action: str = "reject", *, notify: tuple[str, ...] = (),
                changes: tuple[dict[str, Any], ...] = ()) -> AuditEvent:
    return AuditEvent(
        event_id=uuid.uuid4().hex, time=dt.datetime.now(dt.UTC), instance="mx1",
        queue_id="4Q" + uuid.uuid4().hex[:8].upper(), message_uid=uuid.uuid4().hex,
        client_address="192.0.2.7", client_name=None, helo="client.example",
        auth_user=None, sender="alice@example.org", recipients=("bob@example.net",),
        header_from="alice@example.org", message_id="<m1@example.org>",
        subject="quarterly numbers", size=1234, action=action,
        smtp_reply="550 5.7.1 Message rejected by policy" if action == "reject" else None,
        rules=("block-exe",), changes=changes, policy_hash="h1", duration_ms=3.0,
        notify=notify,
    )


def worker_options(tls: Tls, dns: StubDns, **overrides: Any) -> WebhookOptions:
    values: dict[str, Any] = {
        "max_attempts": 5, "timeout_seconds": 5.0, "guard": Guard.from_cidrs(["127.0.0.0/8"]),
        "backoff_base_seconds": 0.1, "backoff_cap_seconds": 0.5,
        "poll_interval_seconds": 0.05, "ssl_context": tls.client, "lookup": dns,
    }
    values.update(overrides)
    return WebhookOptions(**values)


def running_worker(pool: asyncpg.Pool, options: WebhookOptions, metrics: Metrics | None = None
                   ) -> contextlib.AbstractAsyncContextManager[None]:
    return running(pool, options, KEYRING, Metrics() if metrics is None else metrics)


# The one delivery's state after its first attempt, and the wait its retry was given
# (its backoff, or the hold its receiver asked for).
FIRST_FAILURE = """
SELECT d.status, d.attempts, d.last_error,
       extract(epoch FROM greatest(d.next_attempt_at, p.held_until) - d.last_attempt_at) AS wait
FROM webhook_deliveries d JOIN webhook_endpoints p ON p.id = d.endpoint_id
"""


async def first_failure(pool: asyncpg.Pool, options: WebhookOptions) -> asyncpg.Record:
    """Run the worker until the one delivery pending has failed once; its row then."""
    async with running_worker(pool, options):

        async def recorded() -> bool:
            return await pool.fetchval("SELECT last_error FROM webhook_deliveries") is not None

        assert await wait_for_async(recorded)
    row: asyncpg.Record = await pool.fetchrow(FIRST_FAILURE)
    return row


async def write_audit(pool: asyncpg.Pool, *events: AuditEvent) -> None:
    async with pool.acquire() as conn:
        await write_audit_batch(conn, events)


async def raise_reject(database_url: str) -> None:
    """A milter's reject in the audit log, as the milter writes it: its webhook event."""
    conn = await connect(database_url)
    try:
        await write_audit_batch(conn, [audit_event("reject")])
    finally:
        await conn.close()


async def delivery_states(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT d.id, d.status, d.attempts, e.type, e.payload::text AS payload, p.name"
        " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
        " JOIN webhook_endpoints p ON p.id = d.endpoint_id ORDER BY d.id"
    )
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]
