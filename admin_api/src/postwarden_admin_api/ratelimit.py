"""Fixed-window rate limits counted in Postgres, shared by every service instance.

One atomic upsert per hit: the counter only grows while it is below the
limit, so concurrent requests can never overshoot. When Postgres cannot be
reached the limiter counts in process memory instead (per instance, so
looser, but never unlimited) and logs that it did.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from dataclasses import dataclass

import asyncpg
from aiohttp import web

log = logging.getLogger(__name__)

HIT = """
INSERT INTO rate_limit_counters (bucket, window_start, count) VALUES ($1, to_timestamp($2), 1)
ON CONFLICT (bucket, window_start) DO UPDATE SET count = rate_limit_counters.count + 1
WHERE rate_limit_counters.count < $3
RETURNING count
"""
PEEK = "SELECT count FROM rate_limit_counters WHERE bucket = $1 AND window_start = to_timestamp($2)"
PURGE = "DELETE FROM rate_limit_counters WHERE window_start < now() - $1::interval"

DB_FAILURES = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


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


class RateLimiter:
    def __init__(self, pool: asyncpg.Pool, window_seconds: int = 60) -> None:
        self._pool = pool
        self._window = window_seconds
        self._local: dict[tuple[str, int], int] = {}
        self._local_window = 0

    def _current_window(self) -> tuple[int, int]:
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

    async def hit(self, bucket: str, limit: int) -> Quota:
        """Count one request in ``bucket``; refused once ``limit`` were counted this window."""
        start, reset = self._current_window()
        count: int | None
        try:
            async with self._pool.acquire(timeout=2.0) as conn:
                count = await conn.fetchval(HIT, bucket, start, limit)
        except DB_FAILURES:
            log.warning("rate limiter: database unreachable, counting in process")
            count = self._local_hit(bucket, start, limit)
        if count is None:
            return Quota(False, limit, 0, reset)
        return Quota(True, limit, max(0, limit - count), reset)

    async def exhausted(self, bucket: str, limit: int) -> Quota | None:
        """The refusal for ``bucket`` when its limit is already reached, else None."""
        start, reset = self._current_window()
        try:
            async with self._pool.acquire(timeout=2.0) as conn:
                count = await conn.fetchval(PEEK, bucket, start)
        except DB_FAILURES:
            count = self._local.get((bucket, start)) if start == self._local_window else None
        if count is not None and count >= limit:
            return Quota(False, limit, 0, reset)
        return None


async def purge_counters(conn: asyncpg.Connection, older_than: dt.timedelta) -> None:
    await conn.execute(PURGE, older_than)


LIMITER = web.AppKey("limiter", RateLimiter)
