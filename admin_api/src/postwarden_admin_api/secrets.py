"""Secrets at rest: AES-256-GCM under the service's secret key.

A stored secret is the text ``v1:<key id>:<base64(nonce + ciphertext)>``; the
key id names the key that encrypted it, so rotation can tell old values from
new. Tables keep such values in columns whose names end in ``_ciphertext``;
:func:`rotate_secrets` finds every such column and re-encrypts it.

    SecretsError
    ├── NoSecretKey        no key configured: secrets cannot be stored (never plain text)
    ├── UnknownSecretKey   a value was encrypted under a key this keyring does not hold
    └── BadSecretKey       the configured key is not 32 bytes of hex or base64
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping

import asyncpg
from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .settings import ServiceSettings

VERSION = "v1"
_AAD = b"postwarden-secret-v1"
_NONCE_BYTES = 12

SEALED_COLUMNS = """
SELECT table_name, column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND column_name LIKE '%\\_ciphertext'
ORDER BY table_name, column_name
"""


class SecretsError(Exception):
    pass


class NoSecretKey(SecretsError):
    def __init__(self) -> None:
        super().__init__(
            "no secret key configured (set POSTWARDEN_SECRET_KEY or secret_key_file); "
            "refusing to store a secret in plain text"
        )


class UnknownSecretKey(SecretsError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"value was encrypted under key {key_id}, which is not configured")


class BadSecretKey(SecretsError):
    pass


def parse_key_material(text: str) -> bytes:
    """32 key bytes from 64 hex digits or (url-safe) base64."""
    text = text.strip()
    try:
        key = bytes.fromhex(text) if len(text) == 64 else base64.urlsafe_b64decode(
            text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4)
        )
    except (ValueError, binascii.Error) as exc:
        raise BadSecretKey("secret key must be 32 bytes as 64 hex digits or base64") from exc
    if len(key) != 32:
        raise BadSecretKey("secret key must be 32 bytes as 64 hex digits or base64")
    return key


def key_id_of(key: bytes) -> str:
    return hashlib.sha256(b"postwarden-key-id:" + key).hexdigest()[:16]


class Keyring:
    """The current key (used to encrypt) and any older keys (decrypt only)."""

    def __init__(self, current: bytes | None, older: tuple[bytes, ...] = ()) -> None:
        self._current_id = key_id_of(current) if current is not None else None
        keys: dict[str, bytes] = {key_id_of(k): k for k in older}
        if current is not None:
            keys[key_id_of(current)] = current
        self._keys: Mapping[str, bytes] = keys

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Keyring:
        """The current key, and the previous one while a rotation settles."""
        previous = settings.previous_secret_key
        older = (parse_key_material(previous.reveal()),) if previous is not None else ()
        if settings.secret_key is None:
            return cls(None, older)
        return cls(parse_key_material(settings.secret_key.reveal()), older)

    @property
    def current_key_id(self) -> str | None:
        return self._current_id

    def __repr__(self) -> str:
        return f"Keyring(current={self._current_id!r}, keys={len(self._keys)})"

    def encrypt(self, plaintext: str) -> str:
        if self._current_id is None:
            raise NoSecretKey()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self._keys[self._current_id]).encrypt(nonce, plaintext.encode(), _AAD)
        blob = base64.b64encode(nonce + sealed).decode()
        return f"{VERSION}:{self._current_id}:{blob}"

    def decrypt(self, token: str) -> str:
        version, key_id, blob = _split(token)
        if version != VERSION:
            raise SecretsError("unknown secret format")
        key = self._keys.get(key_id)
        if key is None:
            raise UnknownSecretKey(key_id)
        # A damaged value (bad base64, too short, not UTF-8) is a SecretsError like a
        # tampered one: its users log it and go on, rather than fail to start.
        try:
            raw = base64.b64decode(blob, validate=True)
            plain = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _AAD)
            return plain.decode()
        except (InvalidTag, ValueError) as exc:  # binascii.Error, UnicodeDecodeError: ValueErrors
            raise SecretsError("stored secret failed authentication") from exc


def _split(token: str) -> tuple[str, str, str]:
    parts = token.split(":", 2)
    if len(parts) != 3:
        raise SecretsError("unknown secret format")
    return parts[0], parts[1], parts[2]


def token_key_id(token: str) -> str:
    return _split(token)[1]


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def rotate_secrets(conn: asyncpg.Connection, old: Keyring, new: Keyring) -> int:
    """Re-encrypt every ``*_ciphertext`` value under ``new``'s key; returns the count."""
    count = 0
    async with conn.transaction():
        for column in await conn.fetch(SEALED_COLUMNS):
            table = _quote_ident(column["table_name"])
            col = _quote_ident(column["column_name"])
            # Identifiers come from information_schema and are quoted; values are $n.
            rows = await conn.fetch(
                f"SELECT ctid, {col} AS value FROM {table} WHERE {col} IS NOT NULL FOR UPDATE"  # noqa: S608
            )
            for row in rows:
                try:
                    if token_key_id(row["value"]) == new.current_key_id:
                        continue
                    fresh = new.encrypt(old.decrypt(row["value"]))
                except SecretsError as exc:  # nothing is rotated: say which value stops it
                    raise SecretsError(f"{column['table_name']}.{column['column_name']}: "
                                       f"{exc}") from exc
                await conn.execute(
                    f"UPDATE {table} SET {col} = $1 WHERE ctid = $2", fresh, row["ctid"]  # noqa: S608
                )
                count += 1
    return count


KEYRING = web.AppKey("keyring", Keyring)
