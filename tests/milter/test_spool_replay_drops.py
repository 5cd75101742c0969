"""Events a spool replay drops (PostgreSQL refuses them, or does not write them in time)
stay dropped when the milter is killed mid-replay: the next start replays the spool from
its beginning, and neither stores them nor refuses them again."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postwarden_milter.spool import AuditSpool, SpoolBudget
from tests.fixtures.postgres import wait_until
from tests.milter.test_audit_journal import _execute, _queue_ids, _stop
from tests.milter.test_process import _env, _serving
from tests.store.test_audit import make_event

# Rows of the test's queue ids: "refused" is refused for its data, "slow" is not written
# in time, "outage" fails the write as an outage would (the replay stops there, its
# batch and those after it kept in the spool).
_TRIGGER = """
CREATE FUNCTION audit_replay_drops() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.queue_id = '{prefix}1refused' THEN
        RAISE EXCEPTION 'refused' USING ERRCODE = '22000';
    ELSIF NEW.queue_id = '{prefix}2slow' THEN
        PERFORM pg_sleep(60);
    ELSIF NEW.queue_id = '{prefix}3outage' THEN
        RAISE EXCEPTION 'away' USING ERRCODE = '55000';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_replay_drops BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_replay_drops();
"""
_UNTRIGGER = """
DROP TRIGGER audit_replay_drops ON audit_events;
DROP FUNCTION audit_replay_drops();
"""

# A milter whose writer replays the spool in batches of 3: the first stored, refused and
# slow (both dropped), the second failing. Killed by the test once it said all that.
_REPLAYING = """
import sys, time
from pathlib import Path
from postwarden_milter import audit_pipeline
from postwarden_milter.audit_pipeline import AuditPipeline
from postwarden_milter.journal import AuditJournal
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.settings import SpoolFullAction
from postwarden_milter.spool import AuditSpool, SpoolBudget
import logging

logging.basicConfig(level=logging.INFO)
audit_pipeline.BATCH_SIZE = 3
audit_pipeline.WRITE_TIMEOUT = 1.0
audit_pipeline.SLOW_EVENT_ATTEMPTS = 1
directory, dsn = Path(sys.argv[1]), sys.argv[2]
pipeline = AuditPipeline(dsn, AuditSpool(directory, SpoolBudget(10**9)), Metrics(),
                         queue_size=100, spool_full_action=SpoolFullAction.TEMPFAIL,
                         journal=AuditJournal(directory))
loop = LoopThread()
loop.start()
pipeline.start(loop)
time.sleep(600)
"""


@pytest.mark.postgres
def test_events_a_replay_dropped_stay_dropped_after_a_kill_mid_replay(
        tmp_path: Path, database_url: str) -> None:
    prefix = f"4QR{time.monotonic_ns() % 10**8}X"
    env = _env(tmp_path, database_url=database_url)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    names = ["0stored", "1refused", "2slow", "3outage", "4after"]
    AuditSpool(spool_dir, SpoolBudget(10**9)).append(
        [make_event(queue_id=f"{prefix}{name}") for name in names])
    said = tmp_path / "killed.log"
    asyncio.run(_execute(database_url, _TRIGGER.format(prefix=prefix)))
    try:
        with said.open("wb") as output:
            dead = subprocess.Popen([sys.executable, "-c", _REPLAYING, str(spool_dir),
                                     database_url], env=env, stderr=output)
        try:
            assert wait_until(lambda: all(line in said.read_text() for line in (
                "refused by Postgres (DataError): dropped", "DROPPED: not written",
                "audit database unavailable (ObjectNotInPrerequisiteStateError)")),
                timeout=60), said.read_text()
        finally:
            dead.kill()
            dead.wait(10)
    finally:
        asyncio.run(_execute(database_url, _UNTRIGGER))

    def stored() -> list[str]:
        return asyncio.run(_queue_ids(database_url, prefix))

    assert stored() == [f"{prefix}0stored"]
    restarted_log = tmp_path / "restarted.log"
    with _serving(env, restarted_log) as restarted:
        assert wait_until(lambda: f"{prefix}4after" in stored(), timeout=30), (
            restarted_log.read_text())
        _stop(restarted)
    assert stored() == [f"{prefix}{name}" for name in ("0stored", "3outage", "4after")]
    assert "refused by Postgres" not in restarted_log.read_text()
