"""Sending limits counted atomically in Postgres, inside the enqueue transaction.

Each counter is one ``INSERT ... ON CONFLICT ... DO UPDATE ... WHERE ...
RETURNING``: the update only happens while the new count stays within the
limit, and Postgres evaluates that condition on the latest row version under
its row lock, so concurrent requests never overshoot. No row back means the
limit is reached; the caller's transaction then rolls back every counter it
already moved. Counters are taken in one order (recipients sorted, then the
key), so two transactions never wait on each other in a cycle, and the key's
rows (which every request of that key needs) are locked last, for the
shortest time.

Recipients are counted by an HMAC of the address, so the table holds no
plain addresses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass

import asyncpg

from .refusals import Refusal

HIT_WINDOWS = """
INSERT INTO outbound_rate_counters (scope, subject, window_start, count)
SELECT $1, subject, $3, 1 FROM unnest($2::text[]) AS subject ORDER BY subject
ON CONFLICT (scope, subject, window_start) DO UPDATE
SET count = outbound_rate_counters.count + 1
WHERE outbound_rate_counters.count < $4
RETURNING subject
"""
HIT_DAILY = """
INSERT INTO outbound_daily_usage (key_id, day, messages, recipients) VALUES ($1, $2, 1, $3)
ON CONFLICT (key_id, day) DO UPDATE
SET messages = outbound_daily_usage.messages + 1,
    recipients = outbound_daily_usage.recipients + EXCLUDED.recipients
WHERE outbound_daily_usage.messages < $4
RETURNING messages
"""
PURGE_WINDOWS = "DELETE FROM outbound_rate_counters WHERE window_start < $1"
SELECT_HASH_KEY = "SELECT key FROM send_hash_key"
INSERT_HASH_KEY = "INSERT INTO send_hash_key (key) VALUES ($1) ON CONFLICT DO NOTHING"

PER_KEY_MINUTE = "key_minute"
PER_RECIPIENT_DAY = "recipient_day"


@dataclass(frozen=True, slots=True)
class Limits:
    per_key_per_minute: int
    per_recipient_per_day: int
    per_key_per_day: int


class LimitReached(Exception):
    def __init__(self, refusal: Refusal, retry_after: int) -> None:
        super().__init__(refusal.code)
        self.refusal = refusal
        self.retry_after = retry_after


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


def _seconds_until(end: dt.datetime, now: dt.datetime) -> int:
    return max(1, math.ceil((end - now).total_seconds()))


async def consume(
    conn: asyncpg.Connection,
    key_id: str,
    recipient_hashes: list[str],
    limits: Limits,
    now: dt.datetime,
) -> None:
    """Count one message of ``key_id`` to these recipients, or raise LimitReached."""
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    next_day = day_start + dt.timedelta(days=1)
    minute_start = now.replace(second=0, microsecond=0)
    subjects = sorted(set(recipient_hashes))
    # A fresh row is inserted with count 1 whatever the limit, so a limit of
    # zero is refused here.
    if limits.per_recipient_per_day < 1:
        raise LimitReached(Refusal.RECIPIENT_RATE_LIMITED, _seconds_until(next_day, now))
    if limits.per_key_per_minute < 1:
        raise LimitReached(Refusal.RATE_LIMITED, _seconds_until(next_day, now))
    if limits.per_key_per_day < 1:
        raise LimitReached(Refusal.DAILY_QUOTA_EXCEEDED, _seconds_until(next_day, now))
    counted = await conn.fetch(
        HIT_WINDOWS, PER_RECIPIENT_DAY, subjects, day_start, limits.per_recipient_per_day
    )
    if len(counted) < len(subjects):
        raise LimitReached(Refusal.RECIPIENT_RATE_LIMITED, _seconds_until(next_day, now))
    counted = await conn.fetch(
        HIT_WINDOWS, PER_KEY_MINUTE, [key_id], minute_start, limits.per_key_per_minute
    )
    if not counted:
        retry = _seconds_until(minute_start + dt.timedelta(minutes=1), now)
        raise LimitReached(Refusal.RATE_LIMITED, retry)
    used = await conn.fetchval(
        HIT_DAILY, key_id, day_start.date(), len(subjects), limits.per_key_per_day
    )
    if used is None:
        raise LimitReached(Refusal.DAILY_QUOTA_EXCEEDED, _seconds_until(next_day, now))


async def purge_windows(conn: asyncpg.Connection, now: dt.datetime) -> None:
    """Drop counters of windows that ended (the longest window is one day)."""
    await conn.execute(PURGE_WINDOWS, now - dt.timedelta(days=2))
