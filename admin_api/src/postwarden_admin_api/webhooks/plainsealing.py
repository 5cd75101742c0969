"""Sealing, when the service starts, what endpoint rows still hold in plain text from
before a column of theirs was encrypted: the URL (before migration 0006), the api_call
body template (before 0046). Without a key nothing can be sealed: the service says
how many stay plain."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg

from postwarden_admin_api.secrets import Keyring

log = logging.getLogger(__name__)

# One endpoint's plain value (as text) sealed: its id, the value.
Seal = Callable[[asyncpg.Connection, int, str], Awaitable[object]]


async def seal_plain(conn: asyncpg.Connection, keyring: Keyring, column: str, what: str,
                     seal: Seal) -> int:
    """Hand ``seal`` each endpoint's plain ``column`` (one of ours, never a caller's
    text), in one transaction; returns how many. Rows another instance is sealing are
    skipped: it seals them."""
    if keyring.current_key_id is None:
        count: int = await conn.fetchval(
            f"SELECT count(*) FROM webhook_endpoints WHERE {column} IS NOT NULL")  # noqa: S608
        if count:
            log.warning("webhooks: %s %s stay unencrypted: no secret key", count, what)
        return 0
    async with conn.transaction():
        rows = await conn.fetch(
            f"SELECT id, {column}::text AS plain FROM webhook_endpoints "  # noqa: S608
            f"WHERE {column} IS NOT NULL ORDER BY id FOR UPDATE SKIP LOCKED")
        for row in rows:
            await seal(conn, row["id"], row["plain"])
    return len(rows)
