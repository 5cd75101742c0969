"""Seed audit events straight into the store, for tests of the audit search.

``seeded_auditor`` runs a test's own writes on a connection of their own, then mints
the auditor key the test searches with; ``insert_a_minute_apart`` is the writes of
the tests whose events are a table keyed by queue id.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence

import asyncpg

from postwarden_admin_api.context import Role
from postwarden_store import connect
from tests.fixtures.adminapp import MintKey

Seed = Callable[[asyncpg.Connection], Awaitable[object]]


async def seeded_auditor(mint_key: MintKey, database_url: str, seed: Seed) -> str:
    """An auditor key, minted once ``seed`` has run on the database."""
    conn = await connect(database_url)
    try:
        await seed(conn)
    finally:
        await conn.close()
    return await mint_key(Role.AUDITOR)


async def insert_a_minute_apart(conn: asyncpg.Connection, insert: str, base: dt.datetime,
                                events: Mapping[str, Sequence[object]]) -> None:
    """``insert`` run for each queue id, a minute apart from ``base``: $1 an event id
    made from the queue id, $2 the time, $3 the queue id, then the id's values."""
    await conn.execute("SELECT audit_ensure_partition($1)", base)
    for i, (queue_id, values) in enumerate(events.items()):
        await conn.execute(insert, uuid.uuid5(uuid.NAMESPACE_URL, queue_id),
                           base + dt.timedelta(minutes=i), queue_id, *values)
