"""Fixtures of the send API tests: the admin app, runtime settings, a pool, an SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.runtime_settings import apply_changes
from postwarden_admin_api.secrets import Keyring
from postwarden_store import connect, create_pool
from tests.fixtures.adminapp import (  # noqa: F401 - fixtures
    admin_client,
    admin_key,
    admin_settings,
    make_admin_settings,
    mint_key,
)
from tests.fixtures.scripted_smtp import smtp_server  # noqa: F401 - fixture

SetRuntime = Callable[..., Awaitable[None]]


@pytest.fixture
def set_runtime(database_url: str) -> SetRuntime:
    """Store runtime settings in the module database (apps re-read them within 2 s,
    or at once after ``app[RUNTIME].invalidate()``)."""

    async def apply(**changes: Any) -> None:
        conn = await connect(database_url)
        try:
            await apply_changes(conn, Keyring(None), changes, "tests")
        finally:
            await conn.close()

    return apply


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the module database, large enough for the 100-request limit tests."""
    pool = await create_pool(database_url, min_size=1, max_size=30)
    try:
        yield pool
    finally:
        await pool.close()
