"""Policy revisions in Postgres: store (immutable), list, activate and deactivate with NOTIFY.

A change of the active set (revisions activated, policies deactivated, any
number at once) compiles the whole set that would result first, so a change
that conflicts with the policies staying active is refused, all of it, before
anything is written or any milter is told to reload. An advisory lock
serialises changes and stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from postwarden_policies import PolicyIssue
from postwarden_store.policies import fetch_active_sources, notify_policy_change

from .engine import compile_sources, loader_warnings, off_loop
from .notify_targets import notify_warnings

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
WHERE r.policy_name = $1 AND r.id < $3 ORDER BY r.id DESC LIMIT $2
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
SELECT_ACTIVE_OF = """
SELECT policy_name, revision_id FROM active_policies WHERE policy_name = ANY($1::text[])
"""
SELECT_STORED_OF = """
SELECT DISTINCT policy_name FROM policy_revisions WHERE policy_name = ANY($1::text[])
"""
SELECT_ACTIVE_SET = "SELECT policy_name, revision_id FROM active_policies ORDER BY policy_name"
DELETE_ACTIVE = "DELETE FROM active_policies WHERE policy_name = ANY($1::text[])"
SELECT_PREVIOUS = """
SELECT id FROM policy_revisions WHERE policy_name = $1 AND id < $2 ORDER BY id DESC LIMIT 1
"""
UPSERT_ACTIVE = """
INSERT INTO active_policies (policy_name, revision_id, activated_at, activated_by)
VALUES ($1, $2, now(), $3)
ON CONFLICT (policy_name) DO UPDATE
SET revision_id = $2, activated_at = now(), activated_by = $3
"""


@dataclass(frozen=True, slots=True)
class SetChange:
    """Whether a change of the active set changed anything, and the warnings of the
    revisions it activated (.notify_targets: a notify naming no endpoint; .engine: a
    policy test's mistake)."""

    changed: bool
    warnings: list[dict[str, Any]] = field(default_factory=list)


def revision_json(row: asyncpg.Record, with_source: bool = False) -> dict[str, Any]:
    data = {
        "id": row["id"], "policy_name": row["policy_name"], "content_hash": row["content_hash"],
        "author_key_id": row["author_key_id"], "comment": row["comment"],
        "created_at": row["created_at"].isoformat(), "active": row["active"],
    }
    if with_source:
        data["source"] = row["source"]
    return data


async def lock_policies(conn: asyncpg.Connection, wait: float | None = None) -> None:
    """``wait``: seconds, past the pool's command_timeout, for a holder known to keep it longer."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", POLICY_LOCK_KEY, timeout=wait)


async def fetch_revision(conn: asyncpg.Connection, revision_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(SELECT_REVISION, revision_id)
    return row


async def fetch_latest(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(SELECT_LATEST, name)
    return row


async def stored_policies(conn: asyncpg.Connection, names: Iterable[str]) -> set[str]:
    """Those of ``names`` that have a revision (were ever uploaded)."""
    rows = await conn.fetch(SELECT_STORED_OF, list(names))
    return {row["policy_name"] for row in rows}


async def fetch_active(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(SELECT_ACTIVE_REVISION, name)
    return row


async def store_revision(
    conn: asyncpg.Connection, name: str, source: str, *, content_hash: str,
    author: str | None, comment: str | None,
) -> tuple[asyncpg.Record, bool]:
    """(revision, created); an upload equal to the active or the latest revision returns
    that one. The active one first: after a rollback the latest is not active, and a
    push of what is active (the repository reverted to match) must change nothing.

    Call in a transaction: the lock held until it ends keeps concurrent
    identical uploads from each seeing no such revision and inserting one.
    """
    await lock_policies(conn)
    for existing in (await fetch_active(conn, name), await fetch_latest(conn, name)):
        if existing is not None and existing["content_hash"] == content_hash:
            return existing, False
    revision_id = await conn.fetchval(INSERT_REVISION, name, content_hash, source, author, comment)
    row = await fetch_revision(conn, revision_id)
    assert row is not None  # noqa: S101 - inserted in this transaction
    return row, True


async def list_policies(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [
        {**dict(row), "activated_at": row["activated_at"] and row["activated_at"].isoformat()}
        for row in await conn.fetch(LIST_POLICIES)
    ]


async def list_revisions(conn: asyncpg.Connection, name: str, limit: int,
                         before: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Up to ``limit`` revisions of ``name`` older than revision ``before`` (None: from the
    newest), newest first; and the ``before`` of the next page, None on the last."""
    rows = await conn.fetch(LIST_REVISIONS, name, limit + 1, before or 2**63 - 1)
    page = [revision_json(row) for row in rows[:limit]]
    return page, page[-1]["id"] if len(rows) > limit else None


def revision_label(revision: asyncpg.Record) -> str:
    """How compile errors name a stored revision (as the milter's loader names it)."""
    return f"{revision['policy_name']}@r{revision['id']}"


def _label_name(label: str) -> str:
    """The policy name of a label name@rID (what precedes its last "@r")."""
    return label.rpartition("@r")[0]


async def active_revisions(conn: asyncpg.Connection, names: Iterable[str]) -> dict[str, int]:
    """The active revision of each of ``names`` that has one."""
    rows = await conn.fetch(SELECT_ACTIVE_OF, list(names))
    return {row["policy_name"]: row["revision_id"] for row in rows}


async def change_active_set(
    conn: asyncpg.Connection, activate: Sequence[asyncpg.Record], deactivate: Sequence[str],
    actor: str,
) -> SetChange:
    """Make each revision of ``activate`` (at most one per policy) its policy's active one and
    deactivate the policies ``deactivate``, as one change; tell every milter; return
    whether anything changed, and the warnings of the revisions activated. The resulting
    set is compiled once first: a problem is 422 and nothing changes. A revision active
    already changes nothing: it raises no policy.activated and reloads no milter (an
    activation or rollback of the active revision, a Rules API change that wrote no new
    one). Call in a transaction."""
    await lock_policies(conn)
    current = await active_revisions(conn, [revision["policy_name"] for revision in activate])
    activate = [r for r in activate if current.get(r["policy_name"]) != r["id"]]
    if not activate and not deactivate:
        return SetChange(changed=False)
    replaced = {revision["policy_name"] for revision in activate}.union(deactivate)
    kept = [(label, source) for label, source in await fetch_active_sources(conn)
            if _label_name(label) not in replaced]
    new = [(revision_label(revision), revision["source"]) for revision in activate]
    # The new ones last: a repeated name is reported at them, "also used at" the kept one.
    found: list[PolicyIssue] = []
    policy_set = await off_loop(compile_sources, [*kept, *new], found)
    await conn.executemany(UPSERT_ACTIVE, [(r["policy_name"], r["id"], actor) for r in activate])
    await conn.execute(DELETE_ACTIVE, list(deactivate))
    await notify_policy_change(conn)
    labels = {label for label, _ in new}
    activated = [policy for policy in policy_set.policies if policy.source in labels]
    mistakes = loader_warnings([issue for issue in found if issue.file in labels])
    return SetChange(changed=True, warnings=await notify_warnings(conn, activated) + mistakes)


async def activate(conn: asyncpg.Connection, revision: asyncpg.Record, actor: str
                   ) -> SetChange:
    """Make ``revision`` its policy's active one and tell every milter; not ``changed``
    when it was already. Call in a transaction."""
    return await change_active_set(conn, [revision], [], actor)


async def previous_revision(conn: asyncpg.Connection, name: str) -> int | None:
    """The revision before the active one of policy ``name``."""
    active = await conn.fetchval(SELECT_ACTIVE, name)
    if active is None:
        return None
    found: int | None = await conn.fetchval(SELECT_PREVIOUS, name, active)
    return found
