"""The service's relay asks the queue of the Postfix named by ``postfix_config_dir``,
and says why when postqueue cannot tell.

PostfixQueue tells a file qmgr has not taken in for long from one an aborted
transfer left; the service built its relay without it, so past
OPEN_RECEIPT_LIMIT an interrupted attempt whose file waited for a paused qmgr
was sent a second time. Runs the app as the settings configure it, against a
private real Postfix whose qmgr is paused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.app import create_app
from postwarden_admin_api.send.interrupted import PostfixQueue
from postwarden_admin_api.send.sending import SEND
from postwarden_admin_api.settings import ServiceSettings
from tests.fixtures.adminapp import AiohttpClient
from tests.fixtures.postfix import PostfixInstance

from .test_relay import database_url, settled  # noqa: F401 - a fixture
from .test_relay_qmgr_behind import HOST, interrupted, postfix  # noqa: F401 - a fixture
from .test_review_log_lag import due

pytestmark = pytest.mark.postfix


async def test_a_service_with_postfix_config_dir_does_not_send_a_waiting_file_again(
    pool: asyncpg.Pool, postfix: PostfixInstance,  # noqa: F811 - the imported fixture
    aiohttp_client: AiohttpClient, make_admin_settings: Callable[..., ServiceSettings],
) -> None:
    settings = make_admin_settings(
        relay_host="127.0.0.1", relay_port=postfix.port, relay_workers=1,
        relay_backoff_seconds=0.05, maillog_path=postfix.maillog, maillog_host=HOST,
        postfix_config_dir=postfix.config_dir)
    client = await aiohttp_client(create_app(settings))
    message, queue_id = await interrupted(pool, postfix, finished=True)
    relay = client.app[SEND].relay
    assert relay is not None
    await due(pool, relay, message)
    stored = await settled(pool, message)
    assert (stored["status"], stored["queue_id"]) == ("relayed", queue_id)
    assert len(await asyncio.to_thread(postfix.queue)) == 1  # no second copy


async def test_a_postqueue_that_fails_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Its fatal line is logged: under systemd's NoNewPrivileges=yes, without the group
    postdrop, it cannot reach showq, and the queue tells nothing."""
    assert await PostfixQueue(tmp_path).lists("4ABCDEFGH") is None  # no main.cf there
    assert f"{tmp_path}/main.cf" in caplog.text
