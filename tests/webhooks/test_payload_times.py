"""Every time a payload carries has one format: RFC 3339 in UTC with six fractional
digits. The envelope's ``timestamp`` left out a zero fraction, and ``data.time`` (as
PostgreSQL's jsonb writes it) had as many digits as it needed and ``+00:00``: a receiver
parsing with one strict format failed on some deliveries."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re

import asyncpg
import pytest

from postwarden_admin_api.webhooks.events import envelope

from .conftest import StubDns, hook_url
from .receiver import Receiver, Tls, wait_for
from .support import (
    audit_event,
    reject_hook,
    running_worker,
    worker_options,
    write_audit,
)

STRICT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")


@pytest.mark.parametrize(("given", "sent"), [
    ("2026-12-06T12:00:00+00:00", "2026-12-06T12:00:00.000000Z"),
    ("2026-12-06T12:00:00.12+00:00", "2026-12-06T12:00:00.120000Z"),
    ("2026-12-06T13:00:00.123456+01:00", "2026-12-06T12:00:00.123456Z"),
    ("2026-12-06 12:00:00.5+00:00", "2026-12-06T12:00:00.500000Z"),  # str() of a datetime
    (None, None), ("not a time", "not a time"),
])
def test_every_time_of_the_data_has_one_format(given: str | None, sent: str | None) -> None:
    event = envelope("send.delivered", dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC),
                     {"time": given, "logged_at": given})
    assert event["timestamp"] == "2026-12-06T12:00:00.000000Z"
    assert event["data"]["time"] == event["data"]["logged_at"] == sent


@pytest.mark.postgres
async def test_a_delivery_carries_its_times_in_one_format(
    pool: asyncpg.Pool, receiver: Receiver, tls: Tls, dns: StubDns,
) -> None:
    await reject_hook(pool, "ops", hook_url(receiver))
    when = dt.datetime(2026, 12, 6, 12, 0, 0, 120000, tzinfo=dt.UTC)  # jsonb writes .12
    await write_audit(pool, dataclasses.replace(audit_event("reject"), time=when))
    await pool.execute("UPDATE webhook_events SET created_at = '2026-12-06 12:00:01+00'")
    async with running_worker(pool, worker_options(tls, dns)):
        assert await wait_for(lambda: len(receiver.delivered()) == 1)
    body = json.loads(receiver.delivered()[0].body)
    assert (body["timestamp"], body["data"]["time"]) == (
        "2026-12-06T12:00:01.000000Z", "2026-12-06T12:00:00.120000Z")
    assert STRICT.match(body["timestamp"]) and STRICT.match(body["data"]["time"])
