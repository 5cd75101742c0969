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
    text), a row at a time; returns how many."""
    if keyring.current_key_id is None:
        count: int = await conn.fetchval(
            f"SELECT count(*) FROM webhook_endpoints WHERE {column} IS NOT NULL")  # noqa: S608
        if count:
            log.warning("webhooks: %s %s stay unencrypted: no secret key", count, what)
        return 0
    ids = await conn.fetch(
        f"SELECT id FROM webhook_endpoints WHERE {column} IS NOT NULL")  # noqa: S608
    sealed = 0
    for (endpoint_id,) in ids:
        async with conn.transaction():
            # Waiting for the row, not skipping it: a PATCH holding it writes the plain
            # value back, which stayed in clear until the next start. One row a
            # transaction: no lock order to deadlock on. None: another instance sealed it.
            plain: str | None = await conn.fetchval(
                f"SELECT {column}::text FROM webhook_endpoints "  # noqa: S608
                f"WHERE id = $1 AND {column} IS NOT NULL FOR UPDATE", endpoint_id)
            if plain is not None:
                await seal(conn, endpoint_id, plain)
                sealed += 1
    return sealed
