"""Fixed-window rate limits counted in Postgres, shared by every service instance,
in windows of the database's clock (whatever each instance's host says).

One atomic upsert per hit: the counter only grows while it is below the
limit, so concurrent requests can never overshoot. When Postgres cannot be
reached the limiter counts in process memory instead (per instance, so
looser, but never unlimited) and logs that it did.

A counter never shrinks within its window, so a bucket seen at its limit
stays refused until the window ends: the limiter remembers that in process
and answers such buckets without a round trip.

:meth:`RateLimiter.admit` is the one statement an authenticated request
costs: it checks that the key is still active (revoked or expired keys are
refused on their next request, whatever the caller cached), and counts the
request against the key's limit. A key that verified is never refused for its
client address's failed logins (the middleware's block stops guessing only).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from .commits import NO_WAIT
from .errors import briefly, connection
from .keys import LIVE_KEY
from .outages import OUTAGES
from .periodic import DB_ERRORS

# Both commit without waiting for the disk (.commits): a hit lost in a crash is harmless.
# The window is the database clock's, so that instances whose clocks differ count in the
# same one: by their own, one half a minute behind another opened a new window each half
# minute, and a key had its limit twice a minute.


def _window(length: str) -> tuple[str, str]:
    """The CTE ``span`` of the window (``length``: the parameter of its seconds), and the
    columns each statement answers with: its start (epoch seconds), the seconds left."""
    seconds = f"{length}::integer"
    now = "extract(epoch FROM now())"
    span = f"span AS (SELECT floor({now} / {seconds}) * {seconds} AS start)"
    left = (f"(SELECT start::bigint FROM span) AS start, "  # noqa: S608 - constants
            f"(SELECT ceil(start + {seconds} - {now})::integer FROM span) AS reset")
    return span, left


_HIT_SPAN, _HIT_LEFT = _window("$3")
_ADMIT_SPAN, _ADMIT_LEFT = _window("$4")
HIT = f"""
WITH {NO_WAIT}, {_HIT_SPAN}, hit AS (
    INSERT INTO rate_limit_counters AS c (bucket, window_start, count)
    SELECT $1, to_timestamp(start), 1 FROM no_wait, span
    ON CONFLICT (bucket, window_start) DO UPDATE SET count = c.count + 1 WHERE c.count < $2
    RETURNING c.count
)
SELECT (SELECT count FROM hit) AS count, {_HIT_LEFT}
"""  # noqa: S608 - a constant CTE
ADMIT = f"""
WITH {NO_WAIT}, {_ADMIT_SPAN}, live AS (
    SELECT key_id FROM api_keys
    WHERE key_id = $1 AND {LIVE_KEY}
), touched AS (
    UPDATE api_keys SET last_used_at = now()
    WHERE key_id IN (SELECT key_id FROM live)
      AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
), hit AS (
    INSERT INTO rate_limit_counters AS c (bucket, window_start, count)
    SELECT $2, to_timestamp(start), 1 FROM span
    WHERE $1::text IS NULL OR EXISTS (SELECT FROM live)
    ON CONFLICT (bucket, window_start) DO UPDATE SET count = c.count + 1 WHERE c.count < $3
    RETURNING c.count
)
SELECT $1::text IS NULL OR EXISTS (SELECT FROM live) AS live, (SELECT count FROM hit) AS count,
       {_ADMIT_LEFT}
FROM no_wait
"""  # noqa: S608 - a constant CTE
PURGE = "DELETE FROM rate_limit_counters WHERE window_start < now() - $1::interval"
# Its outage's name in the log (.outages): what it does meanwhile.
LIMITER_OUTAGE = "rate limiter (counting in process)"
MAX_REMEMBERED_FULL = 10_000  # buckets remembered as full, per window



@dataclass(frozen=True, slots=True)
class Quota:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


@dataclass(frozen=True, slots=True)
class Admission:
    """What :meth:`RateLimiter.admit` found."""

    live: bool  # the key is neither revoked nor expired (nothing counted if not)
    quota: Quota  # the key's count


class RateLimiter:
    def __init__(self, pool: asyncpg.Pool, window_seconds: int = 60) -> None:
        self._pool = pool
        self._window = window_seconds
        self._local: dict[tuple[str, int], int] = {}
        self._local_window = 0
        self._full: set[str] = set()  # buckets that reached their limit in _full_window
        self._full_window = 0  # its start, by the database's clock (epoch seconds)
        self._full_until = 0.0  # its end, by this process's monotonic clock

    def _known_full(self, bucket: str) -> int | None:
        """The seconds left in the window this process saw ``bucket`` full in, if any."""
        left = math.ceil(self._full_until - time.monotonic())
        return left if left > 0 and bucket in self._full else None

    def _remember_full(self, bucket: str, start: int, reset: int) -> None:
        if start > self._full_window:  # a new window: every bucket starts over
            self._full, self._full_window = set(), start
            self._full_until = time.monotonic() + reset
        # Bounded, in O(1): past the bound a full bucket costs its round trip, and is
        # still refused by its count. (Sifting the buckets at each addition took 30 s
        # of the event loop for 30 000 address groups blocked within one minute.)
        if start == self._full_window and len(self._full) < MAX_REMEMBERED_FULL:
            self._full.add(bucket)

    def _current_window(self) -> tuple[int, int]:
        """The window by this host's clock: for counting in process only."""
        now = time.time()
        start = int(now // self._window) * self._window
        return start, max(1, math.ceil(start + self._window - now))

    def _local_hit(self, bucket: str, start: int, limit: int) -> int | None:
        if start != self._local_window:
            self._local.clear()
            self._local_window = start
        count = self._local.get((bucket, start), 0)
        if count >= limit:
            return None
        self._local[(bucket, start)] = count + 1
        return count + 1

    def _counted(self, bucket: str, limit: int, count: int | None, start: int, reset: int
                 ) -> Quota:
        """The quota once ``bucket``'s count (None: it was full) in the window that
        began at ``start`` and ends in ``reset`` seconds."""
        if count is None:
            self._remember_full(bucket, start, reset)
            return Quota(False, limit, 0, reset)
        return Quota(True, limit, max(0, limit - count), reset)

    async def hit(self, bucket: str, limit: int) -> Quota:
        """Count one request in ``bucket``; refused once ``limit`` were counted this window."""
        refused = self.remembered_full(bucket, limit)
        if refused is not None:
            return refused
        count: int | None
        try:
            async with briefly(self._pool) as conn:
                row = await conn.fetchrow(HIT, bucket, limit, self._window)
            count, start, reset = row["count"], row["start"], row["reset"]
            OUTAGES.back(LIMITER_OUTAGE)
        except DB_ERRORS as exc:
            OUTAGES.failed(LIMITER_OUTAGE, exc)
            start, reset = self._current_window()
            count = self._local_hit(bucket, start, limit)
        return self._counted(bucket, limit, count, start, reset)

    def remembered_full(self, bucket: str, limit: int) -> Quota | None:
        """The refusal for ``bucket`` when this process saw it reach its limit this window."""
        left = self._known_full(bucket)
        return None if left is None else Quota(False, limit, 0, left)

    async def admit(
        self, key_id: str | None, bucket: str, limit: int
    ) -> Admission:
        """Check that ``key_id`` is active (None: no stored key to check); then count one
        request in ``bucket``.

        Database failures propagate: without the database a key's liveness is
        unknown, so the request fails closed.
        """
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(ADMIT, key_id, bucket, limit, self._window)
        if not row["live"]:
            return Admission(False, Quota(False, limit, 0, row["reset"]))
        return Admission(True, self._counted(bucket, limit, row["count"], row["start"],
                                             row["reset"]))


async def purge_counters(conn: asyncpg.Connection, older_than: dt.timedelta) -> None:
    await conn.execute(PURGE, older_than)


LIMITER = web.AppKey("limiter", RateLimiter)
