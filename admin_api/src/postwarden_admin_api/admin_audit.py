"""The append-only admin audit log: who did what, when, from where.

Summaries pass through the policy package's redaction, and callers never put
secret values in them (only names and ``"<set>"`` markers).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
from aiohttp import web

from postwarden_policies.redact import redact

from .auth import client_address
from .context import PRINCIPAL, Principal

INSERT = """
INSERT INTO admin_audit (key_id, key_name, client_address, action, target, summary)
VALUES ($1, $2, $3, $4, $5, $6)
"""
SELECT_PAGE = """
SELECT id, time, key_id, key_name, host(client_address) AS client_address, action, target, summary
FROM admin_audit
WHERE ($1::timestamptz IS NULL OR time >= $1) AND ($2::timestamptz IS NULL OR time < $2)
  AND ($3::text IS NULL OR action = $3) AND ($4::bigint IS NULL OR id < $4)
ORDER BY id DESC LIMIT $5
"""


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
    """Write one admin action by the request's principal."""
    await write(conn, actor=request.get(PRINCIPAL), address=client_address(request),
                action=action, target=target, summary=summary)


async def fetch_page(
    conn: asyncpg.Connection,
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
    action: str | None,
    before_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(SELECT_PAGE, since, until, action, before_id, limit)
    return [{**dict(row), "time": row["time"].isoformat()} for row in rows]
