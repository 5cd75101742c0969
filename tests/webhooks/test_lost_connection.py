"""The webhook worker's connection lost between two statements of its record of an
attempt (PostgreSQL restarting, its backend terminated) was logged as asyncpg's
"connection has been released back to the pool": it is named as a lost connection
(see tests/admin_api/test_worker_lost_connection.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.webhooks import worker
from tests.admin_api.test_database_lost_between_statements import _lose
from tests.admin_api.test_worker_lost_connection import LOST, outage_lines

from .conftest import StubDns, hook_url
from .receiver import Receiver, Tls, wait_for
from .support import audit_event, reject_hook, running_worker, worker_options, write_audit

pytestmark = pytest.mark.postgres


async def test_a_connection_lost_while_recording_an_attempt_is_named(  # noqa: PLR0917 - fixtures
    pool: asyncpg.Pool, fresh_database_url: str, receiver: Receiver, tls: Tls, dns: StubDns,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    gone = worker._gone

    async def gone_then_lost(conn: asyncpg.Connection, row: Mapping[str, Any]
                             ) -> tuple[worker.Outcome, bool]:
        """The 410's check, then the loss, before the attempt is marked failed."""
        answer = await gone(conn, row)
        await _lose(conn, fresh_database_url)
        return answer

    monkeypatch.setattr(worker, "_gone", gone_then_lost)
    receiver.statuses = [410]
    await reject_hook(pool, "archived", hook_url(receiver))
    async with running_worker(pool, worker_options(tls, dns)):
        await write_audit(pool, audit_event("reject"))
        assert await wait_for(lambda: outage_lines(caplog))
    assert outage_lines(caplog)[0] == (f"webhook worker: {LOST}", False)
