"""Settings that admins change while the service runs, stored in ``runtime_settings``.

Each setting has a spec (type, default, bounds). Secret settings are stored
encrypted and are write-only: reads only say whether they are set. Other
modules read the typed :class:`RuntimeSettings` with :func:`load_runtime_settings`
or, per request, through the short-lived cache in ``app[RUNTIME]``, which also
holds the secrets as stored (encrypted), for their users to decrypt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from .addresses import AddressError, sender_pattern
from .bodies import unknown_fields
from .errors import briefly
from .outages import OUTAGES
from .periodic import DB_ERRORS
from .secrets import Keyring

log = logging.getLogger(__name__)

# Its outage's name in the log (.outages): what it does meanwhile.
SETTINGS_OUTAGE = "runtime settings (using the last known)"
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    outbound_enabled: bool = True
    allowed_sender_addresses: tuple[str, ...] = ()  # exact or "*@domain"; empty: none allowed
    outbound_per_key_per_minute: int = 120
    outbound_per_recipient_per_day: int = 100
    outbound_per_key_per_day: int = 10_000
    outbound_max_recipients: int = 50
    # Postfix's default message_size_limit: a larger message would get its 202 and
    # then Postfix's 552. Raise both together.
    max_message_bytes: int = 10_240_000
    max_request_body_bytes: int = 40 * MIB
    max_attachment_bytes: int = 10 * MIB
    audit_retention_days: int = 180


@dataclass(frozen=True, slots=True)
class Bounds:
    minimum: int
    maximum: int


INT_BOUNDS: Mapping[str, Bounds] = {
    "outbound_per_key_per_minute": Bounds(1, 1_000_000),
    "outbound_per_recipient_per_day": Bounds(1, 1_000_000),
    "outbound_per_key_per_day": Bounds(1, 100_000_000),
    "outbound_max_recipients": Bounds(1, 1000),
    "max_message_bytes": Bounds(1024, 1024 * MIB),
    "max_request_body_bytes": Bounds(1024, 1024 * MIB),
    "max_attachment_bytes": Bounds(1, 1024 * MIB),
    "audit_retention_days": Bounds(1, 3650),
}
# Write-only settings, stored encrypted: name -> description.
SECRET_SETTINGS: Mapping[str, str] = {
    "recipient_hash_key": "key for the keyed hash of recipient addresses in rate counters; "
                          "a change starts every recipient's count for the day afresh",
}
# A short key lets whoever reads the counters find their addresses by trying keys
# and likely addresses together: 16 characters (a random one) puts that out of reach.
MIN_SECRET_CHARS = 16
SHORT_SECRET = f"expected a string of at least {MIN_SECRET_CHARS} characters (a random one)"
FIELDS = {f.name: f for f in dataclasses.fields(RuntimeSettings)}
DEFAULTS = RuntimeSettings()

SELECT_ALL = "SELECT name, value, value_ciphertext FROM runtime_settings"
UPSERT = """
INSERT INTO runtime_settings (name, value, value_ciphertext, updated_at, updated_by)
VALUES ($1, $2, $3, now(), $4)
ON CONFLICT (name) DO UPDATE
SET value = $2, value_ciphertext = $3, updated_at = now(), updated_by = $4
"""
DELETE = "DELETE FROM runtime_settings WHERE name = $1"


def _check(name: str, value: Any) -> tuple[Any, str | None]:
    """(converted value, problem or None) for one non-secret setting."""
    kind = str(FIELDS[name].type)
    if kind == "bool":
        return (value, None) if isinstance(value, bool) else (None, "expected true or false")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return None, "expected an integer"
        bounds = INT_BOUNDS[name]
        if not bounds.minimum <= value <= bounds.maximum:
            return None, f"must be between {bounds.minimum} and {bounds.maximum}"
        return value, None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None, "expected a list of addresses"
    patterns = []
    for place, given in enumerate(value):
        try:
            patterns.append(sender_pattern(given))
        except AddressError as exc:  # one no sender could match: say which, and why
            return None, (f"entry {place}: {exc} (expected addresses such as "
                          "user@example.com or *@example.com)")
    # Once each: "A@x.org" and "a@x.org" are one, and were kept (and shown) as two.
    return tuple(dict.fromkeys(patterns)), None


_NAMES = frozenset(FIELDS) | frozenset(SECRET_SETTINGS)  # every setting a PUT may name


def validate_changes(changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Converted values and the list of every problem (field, code, message); unknown
    names as :func:`~.bodies.unknown_fields` lists them."""
    converted: dict[str, Any] = {}
    problems = unknown_fields(changes, _NAMES)
    for name in [name for name in changes if name in _NAMES]:  # as the body names them
        value = changes[name]
        if name in SECRET_SETTINGS:
            if value is not None and (not isinstance(value, str)
                                      or len(value) < MIN_SECRET_CHARS):
                problems.append({"field": name, "message": SHORT_SECRET})
            else:
                converted[name] = value
        elif value is None:
            converted[name] = None  # back to the default
        else:
            good, problem = _check(name, value)
            if problem:
                problems.append({"field": name, "message": problem})
            else:
                converted[name] = good
    return converted, problems


def _typed(rows: list[asyncpg.Record]) -> RuntimeSettings:
    values: dict[str, Any] = {}
    for row in rows:
        if row["name"] in FIELDS and row["value"] is not None:
            good, problem = _check(row["name"], row["value"])
            if problem is None:
                values[row["name"]] = good
            else:
                log.warning("ignoring stored setting %s: %s", row["name"], problem)
    return dataclasses.replace(DEFAULTS, **values)


def _sealed(rows: list[asyncpg.Record]) -> dict[str, str]:
    """The secrets that are set, still encrypted: name -> stored token."""
    return {row["name"]: row["value_ciphertext"] for row in rows
            if row["name"] in SECRET_SETTINGS and row["value_ciphertext"] is not None}


async def load_runtime_settings(conn: asyncpg.Connection) -> RuntimeSettings:
    return _typed(await conn.fetch(SELECT_ALL))


async def describe_settings(conn: asyncpg.Connection) -> dict[str, Any]:
    """Every setting as the API shows it: values, and ``{"is_set": bool}`` for secrets."""
    rows = await conn.fetch(SELECT_ALL)
    shown: dict[str, Any] = dataclasses.asdict(_typed(rows))
    for name, value in shown.items():
        if isinstance(value, tuple):
            shown[name] = list(value)
    sealed = _sealed(rows)
    for name in SECRET_SETTINGS:
        shown[name] = {"is_set": name in sealed}
    return shown


def _stored_form(value: Any) -> Any:
    """A validated plain value as its ``value`` column holds it (JSON: a list, not a tuple)."""
    return list(value) if isinstance(value, tuple) else value


def _leaves_as_is(row: asyncpg.Record | None, name: str, value: Any) -> bool:
    """Whether writing ``value`` would store what ``row`` holds: no change to make."""
    if row is None:
        return value is None  # a default restored that was never replaced
    if value is None or name in SECRET_SETTINGS:
        # A secret written is always a change: telling whether it equals the one stored
        # would confirm a guess of a value no one may read back.
        return False
    # As JSON: true and 1 are not one value.
    return json.dumps(row["value"]) == json.dumps(_stored_form(value))


async def real_changes(conn: asyncpg.Connection, changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` without those that would leave their setting stored as it is, which
    would only move its time of change, and so the settings' ETag. A value written
    over the default it equals stays a change: it is kept through a later default's."""
    stored = {row["name"]: row for row in await conn.fetch(SELECT_ALL)}
    return {name: value for name, value in changes.items()
            if not _leaves_as_is(stored.get(name), name, value)}


async def apply_changes(
    conn: asyncpg.Connection, keyring: Keyring, changes: Mapping[str, Any], actor: str
) -> None:
    """Write validated changes in one transaction; secrets are encrypted first."""
    async with conn.transaction():
        for name, value in changes.items():
            if value is None:
                await conn.execute(DELETE, name)
            elif name in SECRET_SETTINGS:
                await conn.execute(UPSERT, name, None, keyring.encrypt(value), actor)
            else:
                await conn.execute(UPSERT, name, _stored_form(value), None, actor)


class RuntimeSettingsCache:
    """Runtime settings re-read at most every ``ttl`` seconds (and after every change)."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = 2.0) -> None:
        self._pool = pool
        self._ttl = ttl
        self._value = DEFAULTS
        self._sealed: Mapping[str, str] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def get(self) -> RuntimeSettings:
        await self._refresh()
        return self._value

    async def sealed(self, name: str) -> str | None:
        """Secret setting ``name`` as stored (encrypted), as fresh as :meth:`get`; None: unset."""
        await self._refresh()
        return self._sealed.get(name)

    async def _refresh(self) -> None:
        if time.monotonic() - self._loaded_at < self._ttl:
            return
        async with self._lock:
            if time.monotonic() - self._loaded_at >= self._ttl:
                try:
                    async with briefly(self._pool) as conn:
                        rows = await conn.fetch(SELECT_ALL)
                    self._value, self._sealed = _typed(rows), _sealed(rows)
                except DB_ERRORS as exc:
                    OUTAGES.failed(SETTINGS_OUTAGE, exc)
                else:
                    OUTAGES.back(SETTINGS_OUTAGE)
                self._loaded_at = time.monotonic()


RUNTIME = web.AppKey("runtime_settings", RuntimeSettingsCache)
