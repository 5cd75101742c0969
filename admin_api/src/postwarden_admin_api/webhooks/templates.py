"""An api_call's body template is a secret: encrypted at rest, shown only as ``is_set``.

A template may carry a credential in the body it sends (PagerDuty's ``routing_key``,
a CRM's token field), and nothing tells such a template apart from a harmless one; so
every template is sealed with the service's key (``body_template_ciphertext``), as the
headers are. Rows written before migration ``0046_webhook_body_template_secret.sql``
hold it in plain text (``body_template``): they are used as they are, and
:func:`seal_plain_templates` encrypts them when the service starts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import asyncpg

from postwarden_admin_api.secrets import Keyring

from .plainsealing import seal_plain

log = logging.getLogger(__name__)

SEAL = """
UPDATE webhook_endpoints SET body_template = NULL, body_template_ciphertext = $2
WHERE id = $1
"""


def sealed(template: Any, keyring: Keyring) -> str | None:
    """The ``body_template_ciphertext`` of ``template`` (None: no template)."""
    return None if template is None else keyring.encrypt(json.dumps(template))


def template_of(row: Mapping[str, Any], keyring: Keyring) -> Any:
    """An endpoint row's template (raises SecretsError when the key is missing)."""
    cipher: str | None = row["body_template_ciphertext"]
    text: str | None = row["body_template"] if cipher is None else keyring.decrypt(cipher)
    return None if text is None else json.loads(text)


async def seal_plain_templates(conn: asyncpg.Connection, keyring: Keyring) -> int:
    """Encrypt the templates still stored in plain text; returns how many were sealed."""

    async def seal(conn: asyncpg.Connection, endpoint_id: int, template: str) -> None:
        await conn.execute(SEAL, endpoint_id, keyring.encrypt(template))

    count = await seal_plain(conn, keyring, "body_template", "body templates", seal)
    if count:
        # The one moment an upgrade across 0046 shows: an earlier admin instance reads a
        # sealed template as none and posts null in its place (README: Upgrade procedure).
        log.warning("webhooks: encrypted %s body templates stored in plain text; an admin "
                    "instance of an earlier version still running now posts null in their "
                    "place: stop it (README, Upgrade procedure)", count)
    return count
