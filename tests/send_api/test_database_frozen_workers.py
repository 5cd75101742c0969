"""The background parts of the service (the relay workers, the maillog follower, the
webhook worker) through a database that stops answering on open connections (a server
frozen, a partition) and answers again: each says once that it lost the database, and
why, and once that it is back, working again without a restart. The reason was
"(TimeoutError)" alone, which an admin could not tell from a bug; it says there was no
answer. A TCP relay on loopback stands for the network (.dbrelay); a statement's
command timeout (app.COMMAND_TIMEOUT) is made short."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from postwarden_admin_api import app as app_module
from postwarden_admin_api.app import create_app
from tests.fixtures.adminapp import AiohttpClient, settings_for
from tests.fixtures.dbrelay import relayed
from tests.fixtures.ports import free_port

pytestmark = pytest.mark.postgres

PARTS = ["maillog follower", "relay worker", "webhook worker"]


def _parts(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return sorted(r.getMessage().split(":")[0] for r in caplog.records
                  if r.levelno >= logging.WARNING and words in r.getMessage()
                  and r.getMessage().split(":")[0] in PARTS)


async def _until(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    """The parts that said ``words``, once all did or after 60 s."""
    for _ in range(600):
        if sorted(set(_parts(caplog, words))) == PARTS:
            break
        await asyncio.sleep(0.1)
    return _parts(caplog, words)


async def test_workers_say_a_silent_database_once_and_carry_on_once_it_answers(
    aiohttp_client: AiohttpClient, database_url: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "COMMAND_TIMEOUT", 1.0)
    caplog.set_level(logging.WARNING)
    maillog = tmp_path / "mail.log"
    maillog.write_text("")
    async with relayed(database_url) as (relay, through):
        await aiohttp_client(create_app(settings_for(
            through, relay_host="127.0.0.1", relay_port=free_port(), relay_workers=8,
            maillog_path=maillog)))
        await asyncio.sleep(1.5)  # every worker on the database at least once
        caplog.clear()
        relay.freeze()
        away = await _until(caplog, "unavailable")
        relay.thaw()
        back = await _until(caplog, "reachable again")
        # Those of the outage: the relay closes before the app stops, and a poll between
        # the two meets a closed connection, said as such.
        told = list(caplog.records)
    assert away == PARTS, caplog.text  # once each, however many rounds failed
    assert back == PARTS, caplog.text
    for record in told:
        if "unavailable" in record.getMessage():
            assert "no answer in time" in record.getMessage(), record.getMessage()
