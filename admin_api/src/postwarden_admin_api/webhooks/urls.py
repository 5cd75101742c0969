"""Endpoint URLs are secrets: encrypted at rest, shown and logged as scheme and host only.

A Slack incoming-webhook URL carries its credential in the path, other
receivers take one in the query (``token=``, ``sig=``), and nothing tells such
a URL apart from a harmless one; so every endpoint URL is sealed with the
service's key (``url_ciphertext``) and only its origin (``url_origin``) is
stored in plain text, for responses and logs.

Rows written before migration ``0006_webhook_url_secret.sql`` hold the plain
URL; :func:`seal_plain_urls` encrypts them when the service starts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
from yarl import URL

from postwarden_admin_api.secrets import Keyring

from .plainsealing import seal_plain

log = logging.getLogger(__name__)

MASK = "\N{HORIZONTAL ELLIPSIS}"

SEAL = """
UPDATE webhook_endpoints SET url = NULL, url_ciphertext = $2, url_origin = $3 WHERE id = $1
"""


def origin(url: URL) -> str:
    """Scheme, host and an explicit port: what may be shown or logged of ``url``."""
    return str(url.origin())


def masked(url_origin: str) -> str:
    """The URL as responses show it: its origin and a fixed mask for the rest."""
    return f"{url_origin}/{MASK}"


def url_of(row: Mapping[str, Any], keyring: Keyring) -> str:
    """The full URL of an endpoint row (raises SecretsError when the key is missing)."""
    sealed: str | None = row["url_ciphertext"]
    if sealed is None:  # not sealed yet: the service runs without a key
        plain: str = row["url"]
        return plain
    return keyring.decrypt(sealed)


async def seal_plain_urls(conn: asyncpg.Connection, keyring: Keyring) -> int:
    """Encrypt the URLs still stored in plain text; returns how many were sealed."""

    async def seal(conn: asyncpg.Connection, endpoint_id: int, url: str) -> None:
        await conn.execute(SEAL, endpoint_id, keyring.encrypt(url), origin(URL(url)))

    sealed = await seal_plain(conn, keyring, "url", "endpoint URLs", seal)
    if sealed:
        log.info("webhooks: encrypted %s endpoint URLs stored in plain text", sealed)
    return sealed
