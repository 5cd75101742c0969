"""Body cap on bytes actually read, and rate limits counted in Postgres."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api import ratelimit
from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.ratelimit import RateLimiter
from postwarden_store import create_pool
from tests.conftest import PgServer
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for
from tests.fixtures.postgres import durable_commits_hang


async def _chunks(total: int, size: int = 4096) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b" " * piece


async def test_chunked_body_over_the_cap_is_413(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey
) -> None:
    client = await aiohttp_client(create_app(
        settings_for(database_url, max_request_body_bytes=64 * 1024)))
    key = await mint_key(Role.ADMIN)
    response = await client.put("/api/v1/settings", data=_chunks(200 * 1024), headers={
        **bearer(key), "Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"
    assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request_info.headers


async def test_chunked_body_under_the_cap_is_read(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey
) -> None:
    client = await aiohttp_client(create_app(
        settings_for(database_url, max_request_body_bytes=64 * 1024)))
    key = await mint_key(Role.ADMIN)

    async def body() -> AsyncIterator[bytes]:
        yield b'{"audit_retention_days":'
        yield b" 30}"

    response = await client.put("/api/v1/settings", data=body(), headers={
        **bearer(key), "Content-Type": "application/json"})
    assert response.status == 200
    assert (await response.json())["audit_retention_days"] == 30


async def test_declared_length_over_the_cap_is_413_before_reading(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey
) -> None:
    client = await aiohttp_client(create_app(
        settings_for(database_url, max_request_body_bytes=1024)))
    key = await mint_key(Role.ADMIN)
    response = await client.put("/api/v1/settings", data=b"{}" + b" " * 4096,
                                headers=bearer(key))
    assert response.status == 413


async def test_per_key_limit_is_exact_under_50_concurrent_requests(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey
) -> None:
    client = await aiohttp_client(create_app(
        settings_for(database_url, requests_per_minute=20, pool_max_size=30)))
    key = await mint_key(Role.AUDITOR)

    async def one() -> tuple[int, dict[str, str]]:
        response = await client.get("/api/v1/stats", headers=bearer(key))
        await response.read()
        return response.status, dict(response.headers)

    results = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(50))), 60)
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 20, 429: 30}
    refused = [headers for status, headers in results if status == 429]
    assert all(int(h["Retry-After"]) >= 1 and h["RateLimit-Limit"] == "20"
               and h["RateLimit-Remaining"] == "0" for h in refused)
    remaining = sorted(int(h["RateLimit-Remaining"]) for s, h in results if s == 200)
    assert remaining == list(range(20))


async def test_failed_auth_is_limited_per_client_address(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey
) -> None:
    client = await aiohttp_client(create_app(
        settings_for(database_url, auth_failures_per_minute=5)))
    good = await mint_key(Role.ADMIN)
    statuses = []
    for _ in range(8):
        response = await client.get("/api/v1/keys", headers=bearer("pw_0_nope"))
        statuses.append(response.status)
    assert statuses == [401] * 5 + [429] * 3
    # The address is blocked for this window, even with a good key.
    blocked = await client.get("/api/v1/keys", headers=bearer(good))
    assert blocked.status == 429
    assert (await blocked.json())["error"]["code"] == "rate_limited"
    assert "Retry-After" in blocked.headers


async def test_limiter_counts_in_process_when_postgres_is_unreachable(
    database_url: str,
) -> None:
    pool = await create_pool(database_url)
    limiter = RateLimiter(pool)
    assert (await limiter.hit("fallback-test", 3)).allowed
    await pool.close()  # from now on every acquire fails
    results: list[Any] = [await limiter.hit("fallback-test", 3) for _ in range(5)]
    assert [q.allowed for q in results] == [True, True, True, False, False]
    assert results[-1].headers()["Retry-After"]


async def test_counting_a_request_does_not_wait_for_the_disk(
    database_url: str, pg_server: PgServer
) -> None:
    """Every request of a key updates its counter row, locked until the count commits:
    waiting for the WAL flush there queued the key's requests one flush apart. A count
    lost in a crash does no harm. Here durable commits never end."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2,
                                     server_settings={"synchronous_commit": "on"})
    try:
        limiter = RateLimiter(pool)
        async with durable_commits_hang(pg_server.admin_dsn), asyncio.timeout(10):
            assert (await limiter.hit("durable-test", 5)).allowed
            admission = await limiter.admit(None, "durable-admit", 5)
            assert admission.quota.allowed
    finally:
        pool.terminate()


SECOND = "SELECT extract(second FROM now())"  # into the database's minute


class _ClockAhead:
    """The ``time`` module as the limiter sees it on a host whose clock runs an hour and a
    half minute ahead of another's (and of the database's)."""

    monotonic = staticmethod(time.monotonic)

    @staticmethod
    def time() -> float:
        return time.time() + 3630


async def test_instances_whose_clocks_differ_count_in_one_window(
    database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each counted in its host's window: with one instance's clock ahead of the other's a
    key had its limit once per instance, and RateLimit-Reset told another window's end."""
    pool = await create_pool(database_url)
    try:
        here, ahead = RateLimiter(pool), RateLimiter(pool)
        bucket = f"clock-test-{uuid.uuid4().hex}"
        second = float(await pool.fetchval(SECOND))
        if second > 55:  # all in one window: the next
            await asyncio.sleep(60.5 - second)
        assert (await here.admit(None, bucket, 2)).quota.allowed
        monkeypatch.setattr(ratelimit, "time", _ClockAhead)
        assert (await ahead.admit(None, bucket, 2)).quota.allowed
        refused = (await ahead.admit(None, bucket, 2)).quota
        assert not refused.allowed
        assert abs(refused.reset_seconds - (60 - float(await pool.fetchval(SECOND)))) <= 2
        assert not (await ahead.hit(bucket, 2)).allowed
    finally:
        await pool.close()
