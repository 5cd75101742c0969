"""Seed a revision of the Rules API's policy (``database-rules``) straight into the store.

The policies routes refuse that name (422 ``reserved_policy_name``), so a test that
needs a managed policy the Rules API would be slow to build (MAX_RULES rules) or
could not write (a source from an older writer) stores and activates it here, on
the real database, through the functions the routes use.
"""

from __future__ import annotations

from postwarden_admin_api.revisions import activate, store_revision
from postwarden_admin_api.routes_rules import MANAGED_POLICY
from postwarden_policies.policyset import content_hash
from postwarden_store import connect


async def seed_managed(database_url: str, source: str) -> int:
    """Store ``source`` as the newest revision of database-rules, activate it; its id."""
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            row, _ = await store_revision(conn, MANAGED_POLICY, source,
                                          content_hash=content_hash([source]), author=None,
                                          comment="seeded by a test")
            await activate(conn, row, "test")
    finally:
        await conn.close()
    revision: int = row["id"]
    return revision
