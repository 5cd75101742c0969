"""A PostgreSQL whose synchronous_commit is off can lose, after a crash, a message the
send API answered 202 for, or the relay's record of having sent it (so it goes twice):
the service says so when it starts."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest

from postwarden_admin_api.app import create_app
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient, settings_for

WARNING = "synchronous_commit is off"


@pytest.mark.parametrize("setting", ["off", "on"])
async def test_a_database_that_does_not_wait_for_the_disk_is_warned_about_at_start(
    aiohttp_client: AiohttpClient, fresh_database_url: str,
    caplog: pytest.LogCaptureFixture, setting: str,
) -> None:
    conn = await connect(fresh_database_url)
    try:
        database = urlsplit(fresh_database_url).path.lstrip("/")
        await conn.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = {setting}')
    finally:
        await conn.close()
    settings = settings_for(fresh_database_url)
    with caplog.at_level(logging.WARNING, logger="postwarden_admin_api.send"):
        await aiohttp_client(create_app(settings))
    assert (WARNING in caplog.text) is (setting == "off")
