"""docs/api.md and the README: authenticated responses carry ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (refused ones too: they were
counted); ``RateLimit-Reset`` is the seconds until the limit's window ends, and
a 429's ``Retry-After`` says the same. A key over its limit gets 429 first."""

from __future__ import annotations

import math
import time
from typing import Any

from aiohttp import ClientResponse

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for

WINDOW_SECONDS = 60  # requests_per_minute: the windows are clock minutes


async def _limited(aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey,
                   requests_per_minute: int) -> tuple[Any, str]:
    """A service allowing ``requests_per_minute`` a key, and an auditor key."""
    client = await aiohttp_client(create_app(settings_for(
        database_url, requests_per_minute=requests_per_minute)))
    return client, await mint_key(Role.AUDITOR)


async def _timed(client: Any, path: str, key: str, method: str = "GET"
                 ) -> tuple[ClientResponse, float, float]:
    """The response, and the wall clock just before and just after it."""
    before = time.time()
    response = await client.request(method, path, headers=bearer(key))
    await response.read()
    return response, before, time.time()


def _check_reset(response: ClientResponse, before: float, after: float) -> int:
    """RateLimit-Reset counts whole seconds (rounded up) to the end of the window the
    request fell in: now + reset lands on a window boundary."""
    reset = int(response.headers["RateLimit-Reset"])
    assert 1 <= reset <= WINDOW_SECONDS
    boundaries = {(math.floor(t / WINDOW_SECONDS) + 1) * WINDOW_SECONDS for t in (before, after)}
    # reset = ceil(end - now) for some now in [before, after]: end is in (now + reset - 1,
    # now + reset].
    assert any(before + reset - 1 < end <= after + reset for end in boundaries), (
        reset, before, after)
    return reset


def _check_under_the_limit(response: ClientResponse, before: float, after: float) -> None:
    """The headers of a request counted against a limit of 1000 it is not over."""
    assert response.headers["RateLimit-Limit"] == "1000"
    _check_reset(response, before, after)
    assert "Retry-After" not in response.headers


async def test_reset_is_the_time_left_in_the_window(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey
) -> None:
    client, key = await _limited(aiohttp_client, database_url, mint_key, 1000)
    response, before, after = await _timed(client, "/api/v1/stats", key)
    assert response.status == 200
    _check_under_the_limit(response, before, after)
    assert 0 <= int(response.headers["RateLimit-Remaining"]) < 1000


async def test_refused_requests_carry_the_headers_too(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey
) -> None:
    """403 (role), 404 (path) and 405 (method) were counted against the key."""
    client, key = await _limited(aiohttp_client, database_url, mint_key, 1000)
    for method, path, status in [("GET", "/api/v1/keys", 403), ("GET", "/api/v1/nothing", 404),
                                 ("DELETE", "/api/v1/stats", 405)]:
        response, before, after = await _timed(client, path, key, method)
        assert response.status == status, method + path
        _check_under_the_limit(response, before, after)


async def test_a_429_says_to_retry_when_the_window_ends(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey
) -> None:
    client, key = await _limited(aiohttp_client, database_url, mint_key, 2)
    for _ in range(10):  # 3 requests do, unless a window ends between them
        response, before, after = await _timed(client, "/api/v1/stats", key)
        if response.status == 429:
            break
        assert response.status == 200
    assert response.status == 429
    assert (await response.json())["error"]["code"] == "rate_limited"
    assert response.headers["RateLimit-Remaining"] == "0"
    reset = _check_reset(response, before, after)
    assert response.headers["Retry-After"] == str(reset)
    # Over its limit the key is answered 429 whatever it asks, a route its role may
    # not use too (403 otherwise) - unless a new window began meanwhile.
    elsewhere = await client.get("/api/v1/keys", headers=bearer(key))
    if elsewhere.status != 429:
        assert time.time() // WINDOW_SECONDS > after // WINDOW_SECONDS, elsewhere.status
    else:
        assert "Retry-After" in elsewhere.headers
