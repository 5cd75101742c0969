"""A message's times are the database clock's, as its later events' are: the time it was
accepted came from the service host's clock, so on a host behind the database's a
message showed accepted an hour before it was relayed, and a search by ``since`` (or in
newest-first order) placed it an hour back, where a client polling for new messages
missed it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.send import sending
from tests.fixtures.clocks import HostClockBehind

from .conftest import Client, body
from .test_e2e import eventually, status_of

pytestmark = pytest.mark.postgres


async def test_a_message_accepted_on_a_host_whose_clock_runs_behind_is_dated_by_the_database(
    client: Client, sender: dict[str, str], pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sending, "dt", HostClockBehind)
    since = await pool.fetchval("SELECT now()")
    response = await client.post("/api/v1/send-email", json=body(), headers=sender)
    assert response.status == 202, await response.text()
    location = response.headers["Location"]

    async def relayed() -> dict[str, Any] | None:
        message = await status_of(client, sender, location)
        return message if message["status"] == "relayed" else None

    message = await eventually(relayed)
    times = {e["event"]: dt.datetime.fromisoformat(e["time"]) for e in message["events"]}
    created = dt.datetime.fromisoformat(message["created_at"])
    assert since <= created == times["accepted"] <= times["relayed"]
    found = await client.get("/api/v1/messages", headers=sender,
                             params={"since": since.isoformat()})
    assert message["id"] in [m["id"] for m in (await found.json())["messages"]]
