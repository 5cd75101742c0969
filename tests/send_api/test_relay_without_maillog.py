"""A relay without ``maillog_path`` is a setup whose messages never leave ``relayed``:
the service says so when it starts, where an admin reading its log will see it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from postwarden_admin_api.app import create_app
from postwarden_admin_api.settings import ServiceSettings
from tests.fixtures.adminapp import AiohttpClient
from tests.fixtures.scripted_smtp import Scripted

WARNING = "relay_host is set without maillog_path"


@pytest.mark.parametrize("maillog", [False, True], ids=["without", "with"])
async def test_a_relay_without_the_log_is_warned_about_at_start(  # noqa: PLR0917 - fixtures
    aiohttp_client: AiohttpClient, make_admin_settings: Callable[..., ServiceSettings],
    smtp_server: tuple[Scripted, int], tmp_path: Path, caplog: pytest.LogCaptureFixture,
    maillog: bool,
) -> None:
    log_file = tmp_path / "postfix.log"
    log_file.touch()
    settings = make_admin_settings(relay_host="127.0.0.1", relay_port=smtp_server[1],
                                   maillog_path=log_file if maillog else None)
    with caplog.at_level(logging.WARNING, logger="postwarden_admin_api.send"):
        await aiohttp_client(create_app(settings))
    assert (WARNING in caplog.text) is not maillog
