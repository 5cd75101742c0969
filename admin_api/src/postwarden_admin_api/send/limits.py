"""Sending limits counted atomically in Postgres, inside the enqueue statement.

The counting itself is SQL (``send_enqueue`` in migration 0007): each counter
is one ``INSERT ... ON CONFLICT ... DO UPDATE ... WHERE count < limit``, which
Postgres evaluates on the latest row version under its row lock, so
concurrent requests never overshoot; a reached limit raises and rolls back
every counter already moved. Counters are taken in one order (recipients
sorted, then the key), so two transactions never wait on each other in a
cycle, and the key's rows (which every request of that key needs) are locked
last, for the shortest time. The windows are the database clock's (migration
0048), so instances whose clocks differ count in the same ones. This module holds
the refusals and the recipient hashing.

A refused request moved no counter, so which recipients stopped it is read
afterwards (:meth:`LimitReached.full_recipients`): a window's counts only
grow, so the one that refused it is among those found at their limit.

Recipients are counted by an HMAC of the address, so the table holds no
plain addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass

import asyncpg

from postwarden_admin_api.errors import ApiError
from postwarden_admin_api.runtime_settings import MIN_SECRET_CHARS
from postwarden_admin_api.secrets import Keyring, SecretsError

from .refusals import FieldProblem, Refusal

log = logging.getLogger(__name__)
HASH_KEY_SETTING = "recipient_hash_key"

# By the database's clock, which the windows go by (migration 0048): a host's ahead for
# a round would drop the day's counters, and every recipient could have its day's
# limit of messages again.
PURGE_WINDOWS = ("DELETE FROM outbound_rate_counters "
                 "WHERE window_start < now() - interval '2 days'")
SELECT_HASH_KEY = "SELECT key FROM send_hash_key"
INSERT_HASH_KEY = "INSERT INTO send_hash_key (key) VALUES ($1) ON CONFLICT DO NOTHING"
RECIPIENT_FULL = "this recipient has had its limit of messages today"


@dataclass(frozen=True, slots=True)
class Limits:
    per_key_per_minute: int
    per_recipient_per_day: int
    per_key_per_day: int


class LimitReached(Exception):
    def __init__(self, refusal: Refusal, retry_after: int,
                 full_recipients: frozenset[str] = frozenset()) -> None:
        super().__init__(refusal.code)
        self.refusal = refusal
        self.retry_after = retry_after
        # recipient_rate_limited: the hashes of the recipients at their daily limit.
        self.full_recipients = full_recipients

    def error(self, limits: Limits, fields: Collection[str] = ()) -> ApiError:
        """The 429, its ``details[].kind`` naming the limit: ``rate_limited`` is the
        per-key request limit's code too (whose kind is ``key``). ``fields`` (``to[3]``)
        name the recipients at their limit: one entry each, as a field problem."""
        kind, limit = {
            Refusal.RATE_LIMITED: ("send_per_minute", limits.per_key_per_minute),
            Refusal.RECIPIENT_RATE_LIMITED: ("recipient_per_day", limits.per_recipient_per_day),
            Refusal.DAILY_QUOTA_EXCEEDED: ("send_per_day", limits.per_key_per_day),
        }[self.refusal]
        reached = {"kind": kind, "limit": limit}
        details = [FieldProblem(field, self.refusal, RECIPIENT_FULL).as_detail() | reached
                   for field in fields]
        return self.refusal.error({"Retry-After": str(self.retry_after)}, details or [reached])


def recipient_hash(hash_key: bytes, address: str) -> str:
    return hmac.new(hash_key, address.lower().encode(), hashlib.sha256).hexdigest()


def derive_hash_key(secret: bytes) -> bytes:
    """The recipient-hash key derived from the service secret (never the secret itself)."""
    return hmac.new(secret, b"postwarden send recipient hash v1", hashlib.sha256).digest()


async def stored_hash_key(conn: asyncpg.Connection) -> bytes:
    """A random key kept in the database, for services without a secret_key."""
    await conn.execute(INSERT_HASH_KEY, secrets.token_bytes(32))
    key: bytes = await conn.fetchval(SELECT_HASH_KEY)
    return key


class HashKey:
    """The recipient-hash key for the stored value of ``recipient_hash_key``.

    Decrypting and deriving take about 5 µs (timeit), nothing beside a send; the key is
    still kept per stored value, so that an unreadable one is logged once per
    change rather than at every send.
    """

    def __init__(self, keyring: Keyring, stored: bytes) -> None:
        self._keyring = keyring
        self._stored = stored  # from stored_hash_key, which never changes it
        self._token: str | None = None
        self._key: bytes | None = stored

    def current(self, token: str | None) -> bytes | None:
        """The key for ``token`` (None: the secret is unset); None if it is unreadable here.

        None stops this instance's sending (503) rather than count per-recipient
        limits under another key than the other instances', where a limit would
        hold per instance only.
        """
        if token != self._token:
            self._token, self._key = token, self._derive(token)
        return self._key

    def _derive(self, token: str | None) -> bytes | None:
        if token is None:
            return self._stored
        try:
            secret = self._keyring.decrypt(token)
        except SecretsError as exc:
            log.error("%s is set but cannot be decrypted here (%s): sending refused; give "
                      "this instance the secret_key it was stored under (or that key as "
                      "previous_secret_key during a rotation)", HASH_KEY_SETTING, exc)
            return None
        if len(secret) < MIN_SECRET_CHARS:
            # Stored before the API refused one so short: kept, as refusing it would stop
            # every instance's sending, and replacing it starts the day's counts afresh.
            log.warning("%s is shorter than %d characters: the recipient hashes in the rate "
                        "counters can be reversed by trying addresses; set a random one of "
                        "at least %d (PUT /api/v1/settings)", HASH_KEY_SETTING,
                        MIN_SECRET_CHARS, MIN_SECRET_CHARS)
        return derive_hash_key(secret.encode())


def refusal(code: str, detail: str | None, hint: str | None) -> LimitReached | None:
    """The LimitReached for a refusal code raised by ``send_enqueue``, else None. Its
    windows are the database's (migration 0048): the HINT is the seconds until the
    refusing one ends, the DETAIL the recipient hashes at their limit."""
    refused = {r.code: r for r in (Refusal.RATE_LIMITED, Refusal.RECIPIENT_RATE_LIMITED,
                                   Refusal.DAILY_QUOTA_EXCEEDED)}.get(code)
    if refused is None:
        return None
    full = frozenset(detail.split(",")) if detail else frozenset()
    return LimitReached(refused, max(1, int(hint or 1)), full)


async def purge_windows(conn: asyncpg.Connection) -> None:
    """Drop counters of windows that ended (the longest is one day)."""
    await conn.execute(PURGE_WINDOWS)
