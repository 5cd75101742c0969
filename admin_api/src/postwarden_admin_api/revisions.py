"""Policy revisions in Postgres: store (immutable), list, activate with NOTIFY.

Activation compiles the whole set that would become active first, so a
revision that conflicts with the other active policies is refused before any
milter is told to reload. An advisory lock serialises activations and stores.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from postwarden_store.policies import fetch_active_sources, notify_policy_change

from .engine import compile_sources, off_loop

# pg_advisory_xact_lock key: ASCII of "pwpolicy".
POLICY_LOCK_KEY = 0x7077706F6C696379
REVISION_COLUMNS = (
    "r.id, r.policy_name, r.content_hash, r.author_key_id, r.comment, r.created_at, "
    "(a.revision_id IS NOT NULL) AS active"
)
INSERT_REVISION = """
INSERT INTO policy_revisions (policy_name, content_hash, source, author_key_id, comment)
VALUES ($1, $2, $3, $4, $5) RETURNING id
"""
SELECT_REVISION = f"""
SELECT {REVISION_COLUMNS}, r.source
FROM policy_revisions r
LEFT JOIN active_policies a ON a.revision_id = r.id
WHERE r.id = $1
"""  # noqa: S608 - constant columns
SELECT_LATEST = f"""
SELECT {REVISION_COLUMNS}, r.source
FROM policy_revisions r
LEFT JOIN active_policies a ON a.revision_id = r.id
WHERE r.policy_name = $1 ORDER BY r.id DESC LIMIT 1
"""  # noqa: S608
SELECT_ACTIVE_REVISION = f"""
SELECT {REVISION_COLUMNS}, r.source
FROM active_policies a
JOIN policy_revisions r ON r.id = a.revision_id
WHERE a.policy_name = $1
"""  # noqa: S608
LIST_REVISIONS = f"""
SELECT {REVISION_COLUMNS}
FROM policy_revisions r
LEFT JOIN active_policies a ON a.revision_id = r.id
WHERE r.policy_name = $1 ORDER BY r.id DESC LIMIT $2
"""  # noqa: S608
LIST_POLICIES = """
SELECT r.policy_name, max(r.id) AS latest_revision, count(*) AS revisions,
       a.revision_id AS active_revision, a.activated_at, a.activated_by
FROM policy_revisions r
LEFT JOIN active_policies a ON a.policy_name = r.policy_name
GROUP BY r.policy_name, a.revision_id, a.activated_at, a.activated_by
ORDER BY r.policy_name
"""
SELECT_ACTIVE = "SELECT revision_id FROM active_policies WHERE policy_name = $1"
SELECT_PREVIOUS = """
SELECT id FROM policy_revisions WHERE policy_name = $1 AND id < $2 ORDER BY id DESC LIMIT 1
"""
UPSERT_ACTIVE = """
INSERT INTO active_policies (policy_name, revision_id, activated_at, activated_by)
VALUES ($1, $2, now(), $3)
ON CONFLICT (policy_name) DO UPDATE
SET revision_id = $2, activated_at = now(), activated_by = $3
"""


def revision_json(row: asyncpg.Record, with_source: bool = False) -> dict[str, Any]:
    data = {
        "id": row["id"], "policy_name": row["policy_name"], "content_hash": row["content_hash"],
        "author_key_id": row["author_key_id"], "comment": row["comment"],
        "created_at": row["created_at"].isoformat(), "active": row["active"],
    }
    if with_source:
        data["source"] = row["source"]
    return data


async def lock_policies(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", POLICY_LOCK_KEY)


async def fetch_revision(conn: asyncpg.Connection, revision_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(SELECT_REVISION, revision_id)
    return row


async def fetch_latest(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(SELECT_LATEST, name)
    return row


async def fetch_active(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(SELECT_ACTIVE_REVISION, name)
    return row


async def store_revision(
    conn: asyncpg.Connection, name: str, source: str, *, content_hash: str,
    author: str | None, comment: str | None,
) -> tuple[asyncpg.Record, bool]:
    """(revision, created); an upload equal to the latest revision returns that one.

    Call in a transaction: the lock held until it ends keeps concurrent
    identical uploads from each seeing no such revision and inserting one.
    """
    await lock_policies(conn)
    latest = await fetch_latest(conn, name)
    if latest is not None and latest["content_hash"] == content_hash:
        return latest, False
    revision_id = await conn.fetchval(INSERT_REVISION, name, content_hash, source, author, comment)
    row = await fetch_revision(conn, revision_id)
    assert row is not None  # noqa: S101 - inserted in this transaction
    return row, True


async def list_policies(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [
        {**dict(row), "activated_at": row["activated_at"] and row["activated_at"].isoformat()}
        for row in await conn.fetch(LIST_POLICIES)
    ]


async def list_revisions(conn: asyncpg.Connection, name: str, limit: int) -> list[dict[str, Any]]:
    return [revision_json(row) for row in await conn.fetch(LIST_REVISIONS, name, limit)]


async def activate(conn: asyncpg.Connection, revision: asyncpg.Record, actor: str) -> None:
    """Make ``revision`` its policy's active one and tell every milter. Call in a transaction."""
    await lock_policies(conn)
    name = revision["policy_name"]
    label = f"{name}@r{revision['id']}"
    others = [(lbl, src) for lbl, src in await fetch_active_sources(conn)
              if not lbl.startswith(f"{name}@r")]
    await off_loop(compile_sources, [*others, (label, revision["source"])])
    await conn.execute(UPSERT_ACTIVE, name, revision["id"], actor)
    await notify_policy_change(conn)


async def previous_revision(conn: asyncpg.Connection, name: str) -> int | None:
    """The revision before the active one of policy ``name``."""
    active = await conn.fetchval(SELECT_ACTIVE, name)
    if active is None:
        return None
    found: int | None = await conn.fetchval(SELECT_PREVIOUS, name, active)
    return found
