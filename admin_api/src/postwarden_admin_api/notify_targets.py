"""A policy's ``notify`` naming a webhook endpoint that does not exist (never made,
renamed, deleted) raises nothing for it, silently. The milter does not know the
endpoints and refuses no set for it; the admin service does know them, so storing or
activating a revision answers a warning for each such name, and logs it, and so does
deleting an endpoint an active policy notifies."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import Any

import asyncpg

from postwarden_policies.model import Policy
from postwarden_store.policies import fetch_active_sources

from .engine import compile_sources, off_loop
from .errors import ValidationFailed

log = logging.getLogger(__name__)

UNKNOWN = """
SELECT n FROM unnest($1::text[]) n WHERE NOT EXISTS (SELECT FROM webhook_endpoints WHERE name = n)
ORDER BY n
"""


def _notifying(policies: Iterable[Policy]) -> dict[str, list[str]]:
    """Each endpoint name a rule notifies, and the rules (``policy/rule``) naming it."""
    named: dict[str, list[str]] = {}
    for policy in policies:
        for rule in policy.rules:
            for endpoint in rule.then.notify:
                named.setdefault(endpoint, []).append(f"{policy.name}/{rule.name}")
    return named


async def notify_warnings(conn: asyncpg.Connection, policies: Iterable[Policy],
                          endpoints: Collection[str] | None = None) -> list[dict[str, Any]]:
    """A warning, logged too, for each endpoint ``policies`` notify that does not exist
    (of ``endpoints`` only, when given)."""
    named = {endpoint: rules for endpoint, rules in _notifying(policies).items()
             if endpoints is None or endpoint in endpoints}
    if not named:
        return []
    warnings = []
    for (endpoint,) in await conn.fetch(UNKNOWN, list(named)):
        rules = named[endpoint]
        message = (f"notify names {endpoint!r}, which no webhook endpoint is: nothing is "
                   "sent for it until one is made")
        log.warning("policy rules %s: %s", ", ".join(rules), message)
        warnings.append({"code": "notify_endpoint_missing", "endpoint": endpoint,
                         "rules": rules, "message": message})
    return warnings


async def gone_warnings(conn: asyncpg.Connection, endpoints: Collection[str]
                        ) -> list[dict[str, Any]]:
    """The warnings of the active policies for ``endpoints``, just deleted: a rule that
    notified one now notifies nobody. Call holding the policy lock (.revisions), so an
    activation either comes first and is seen here, or comes after and warns itself."""
    try:
        policy_set = await off_loop(compile_sources, await fetch_active_sources(conn))
    except ValidationFailed:
        # An active set this version no longer reads (stored by an older one): no
        # reason to refuse the endpoint's change.
        log.warning("notify warnings skipped: the active policy set does not load here")
        return []
    return await notify_warnings(conn, policy_set.policies, endpoints)
