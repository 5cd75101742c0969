"""Migration 0030 gives each existing key the first key of its rotation line as its
owner, however long the line; a key inserted without one (by an instance still
running the previous version) begins its own line."""

from __future__ import annotations

import pytest

from postwarden_store import connect
from postwarden_store.migrations import available_migrations

pytestmark = pytest.mark.postgres

KEY = ("INSERT INTO api_keys (key_id, secret_sha256, name, role) "
       "VALUES ($1, '\\x00', $1, 'sender')")


async def test_existing_rotation_lines_get_their_first_key_as_owner(
    fresh_database_url: str,
) -> None:
    [migration] = [m for m in available_migrations() if m.version == "0030_api_key_owner"]
    conn = await connect(fresh_database_url)
    try:
        # As before 0030.
        await conn.execute("DROP TRIGGER api_keys_own_line ON api_keys; "
                           "DROP FUNCTION api_keys_own_line(); "
                           "ALTER TABLE api_keys DROP COLUMN owner")
        for key in ("a1", "a2", "a3", "b1", "c1", "c2"):
            await conn.execute(KEY, key)
        for old, new in (("a1", "a2"), ("a2", "a3"), ("c1", "c2")):
            await conn.execute("UPDATE api_keys SET rotated_to = $2 WHERE key_id = $1", old, new)
        await conn.execute(migration.sql)
        await conn.execute(KEY, "d1")  # the previous version's INSERT names no owner
        owners = dict(await conn.fetch("SELECT key_id, owner FROM api_keys"))
    finally:
        await conn.close()
    assert owners == {"a1": "a1", "a2": "a1", "a3": "a1", "b1": "b1", "c1": "c1", "c2": "c1",
                      "d1": "d1"}
