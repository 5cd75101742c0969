"""The append-only admin audit log: who did what, when, from where.

Summaries pass through the policy package's redaction, and callers never put
secret values in them (only names and ``"<set>"`` markers).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from typing import Any

import asyncpg
from aiohttp import web

from postwarden_policies.redact import redact

from .audit_queries import cursor_rows
from .auth import client_address, unauthenticated
from .context import PRINCIPAL, Principal
from .keys import LIVE_KEY
from .sqlwhere import Where

# Held until the change commits: a revocation waits for a change already under way, and
# a change finishing after one (its body came in slowly) finds the key revoked.
ACTOR_IS_LIVE = f"SELECT {LIVE_KEY} FROM api_keys WHERE key_id = $1 FOR SHARE"  # noqa: S608
_ENDING_A_KEY = frozenset({"key.revoked", "key.rotated"})
# The development fallback key: on while no key exists but the one its change just made.
DEV_KEY_STILL_ON = "SELECT NOT EXISTS (SELECT FROM api_keys WHERE key_id IS DISTINCT FROM $1)"
INSERT = """
INSERT INTO admin_audit (key_id, key_name, client_address, action, target, summary)
VALUES ($1, $2, $3, $4, $5, $6)
"""
PAGE_COLUMNS = ("id, time, key_id, key_name, host(client_address) AS client_address, action, "
                "target, summary")
# filter -> SQL fragment with one placeholder "{}" for its parameter number; only the
# filters given are in the query (.sqlwhere).
PAGE_FILTERS = {
    "since": "time >= ${}",
    "until": "time < ${}",
    "action": "action = ${}",
    "before_id": "id < ${}",
}


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


async def write(
    conn: asyncpg.Connection,
    *,
    actor: Principal | None,
    address: str | None,
    action: str,
    target: str | None,
    summary: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        INSERT,
        actor.key_id if actor else None,
        actor.name if actor else None,
        address,
        action,
        target,
        _scrub(summary or {}),
    )


async def record(
    conn: asyncpg.Connection,
    request: web.Request,
    action: str,
    target: str | None,
    summary: dict[str, Any] | None = None,
) -> None:
    """Write one admin action by the request's principal, in the change's transaction;
    :func:`~.auth.unauthenticated` (the change rolled back) once its key is no longer
    live: it was checked at the request's admission, and a body may take a minute."""
    actor = request.get(PRINCIPAL)
    if actor is not None and not await _still_live(conn, actor, action, target):
        raise unauthenticated()
    await write(conn, actor=actor, address=client_address(request),
                action=action, target=target, summary=summary)


async def _still_live(conn: asyncpg.Connection, actor: Principal, action: str,
                      target: str | None) -> bool:
    if actor.is_dev_fallback:
        made = target if action == "key.created" else None
        return bool(await conn.fetchval(DEV_KEY_STILL_ON, made))
    # A key that revoked or rotated itself was found live under that change's own lock,
    # and is no longer live by that change.
    if action in _ENDING_A_KEY and target == actor.key_id:
        return True
    return bool(await conn.fetchval(ACTOR_IS_LIVE, actor.key_id))


def page_sql(filters: dict[str, Any], limit: int) -> tuple[str, list[Any]]:
    """The query of one page, newest first, and its parameters; ``filters`` maps names of
    :data:`PAGE_FILTERS` to values, None for a filter not given."""
    where = Where()
    for name, fragment in PAGE_FILTERS.items():
        if filters.get(name) is not None:
            where.add(fragment, filters[name])
    return (f"SELECT {PAGE_COLUMNS} FROM admin_audit{where} "  # noqa: S608 - constant fragments
            f"ORDER BY id DESC LIMIT {where.parameter(limit)}", where.params)


def page_rows(conn: asyncpg.Connection, filters: dict[str, Any], limit: int
              ) -> AsyncIterable[asyncpg.Record]:
    """The rows of :func:`page_sql`, a few at a time: an entry can hold a whole settings
    change, so the route cuts a page in bytes too (:func:`~.audit_queries.cursor_rows`)."""
    return cursor_rows(conn, *page_sql(filters, limit))


def entry_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {**dict(row), "time": row["time"].isoformat()}
