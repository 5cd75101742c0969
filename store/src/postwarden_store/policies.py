"""Queries on policy revisions that both the milter and the admin service use."""

from __future__ import annotations

import asyncpg

# NOTIFY channel raised when the set of active revisions changes.
POLICY_CHANNEL = "postwarden_policy"

SELECT_ACTIVE_SOURCES = """
SELECT r.policy_name, r.id, r.source
FROM active_policies a
JOIN policy_revisions r ON r.id = a.revision_id
ORDER BY r.policy_name
"""


async def fetch_active_sources(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(label, YAML source) of every active revision; the label names it in errors."""
    rows = await conn.fetch(SELECT_ACTIVE_SOURCES)
    return [(f"{row['policy_name']}@r{row['id']}", row["source"]) for row in rows]


async def notify_policy_change(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_notify($1, 'activated')", POLICY_CHANNEL)
