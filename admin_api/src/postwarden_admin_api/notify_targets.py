"""A policy's ``notify`` naming a webhook endpoint that does not exist (never made,
renamed, deleted) or is disabled (by an operator, or after its receiver answered 410
Gone) raises nothing for it, silently: ``webhook_raise`` delivers to enabled endpoints
only. The milter does not know the endpoints and refuses no set for it; the admin
service does know them, so storing or activating a revision answers a warning for each
such name, and logs it, and so does deleting, renaming or disabling an endpoint an
active policy notifies."""

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

ENDPOINT_MISSING = "notify_endpoint_missing"
ENDPOINT_DISABLED = "notify_endpoint_disabled"

# Each name of $1 no endpoint serves: none has it (e.name null), or its endpoint is off.
UNSERVED = """
SELECT n, e.name IS NOT NULL AS disabled, e.disabled_reason
FROM unnest($1::text[]) n LEFT JOIN webhook_endpoints e ON e.name = n
WHERE e.name IS NULL OR NOT e.enabled
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
    or is disabled (of ``endpoints`` only, when given)."""
    named = {endpoint: rules for endpoint, rules in _notifying(policies).items()
             if endpoints is None or endpoint in endpoints}
    if not named:
        return []
    warnings = []
    for endpoint, disabled, reason in await conn.fetch(UNSERVED, list(named)):
        rules = named[endpoint]
        code, message = _disabled(endpoint, reason) if disabled else _missing(endpoint)
        log.warning("policy rules %s: %s", ", ".join(rules), message)
        warnings.append({"code": code, "endpoint": endpoint, "rules": rules,
                         "message": message})
    return warnings


def _missing(endpoint: str) -> tuple[str, str]:
    return ENDPOINT_MISSING, (f"notify names {endpoint!r}, which no webhook endpoint "
                             "is: nothing is sent for it until one is made")


def _disabled(endpoint: str, reason: str | None) -> tuple[str, str]:
    why = f"disabled ({reason})" if reason else "disabled by an operator"
    return ENDPOINT_DISABLED, (f"notify names {endpoint!r}, a webhook endpoint {why}: "
                              "nothing is sent for it until it is enabled again")


async def active_warnings(conn: asyncpg.Connection, endpoints: Collection[str]
                          ) -> list[dict[str, Any]]:
    """The warnings of the active policies for ``endpoints``, just deleted, renamed away
    or disabled: a rule that notified one now notifies nobody. Call holding the policy
    lock (.revisions), so an activation either comes first and is seen here, or comes
    after and warns itself."""
    try:
        policy_set = await off_loop(compile_sources, await fetch_active_sources(conn))
    except ValidationFailed:
        # An active set this version no longer reads (stored by an older one): no
        # reason to refuse the endpoint's change.
        log.warning("notify warnings skipped: the active policy set does not load here")
        return []
    return await notify_warnings(conn, policy_set.policies, endpoints)
