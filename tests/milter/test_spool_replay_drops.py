"""Events a spool replay drops (PostgreSQL refuses them, or does not write them in time)
stay dropped when the milter is killed mid-replay: the next start, which replays the
spool from its last batch done (or its beginning), neither stores them nor refuses them
again; nor writes again what was stored."""

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


def _killed_mid_replay(tmp_path: Path, database_url: str, prefix: str, spooled: bytes,
                       said: tuple[str, ...]) -> None:
    """A milter replaying ``spooled`` until it ``said`` all that, then killed."""
    env = _env(tmp_path, database_url=database_url)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "audit-spool.jsonl").write_bytes(spooled)
    output_path = tmp_path / "killed.log"
    asyncio.run(_execute(database_url, _TRIGGER.format(prefix=prefix)))
    try:
        with output_path.open("wb") as output:
            dead = subprocess.Popen([sys.executable, "-c", _REPLAYING, str(spool_dir),
                                     database_url], env=env, stderr=output)
        try:
            assert wait_until(lambda: dead.poll() is not None or all(
                line in output_path.read_text() for line in said), timeout=60)
            assert dead.poll() is None, output_path.read_text()
            assert all(line in output_path.read_text() for line in said), (
                output_path.read_text())
        finally:
            dead.kill()
            dead.wait(10)
    finally:
        asyncio.run(_execute(database_url, _UNTRIGGER))


def _restarted(tmp_path: Path, database_url: str, prefix: str) -> str:
    """What a milter restarted said, once it replayed the spool to its last event."""
    log = tmp_path / "restarted.log"
    with _serving(_env(tmp_path, database_url=database_url), log) as restarted:
        assert wait_until(lambda: f"{prefix}4after" in _stored(database_url, prefix),
                          timeout=30), log.read_text()
        _stop(restarted)
    return log.read_text()


def _stored(database_url: str, prefix: str) -> list[str]:
    return asyncio.run(_queue_ids(database_url, prefix))


def _lines(prefix: str, names: list[str]) -> bytes:
    return "".join(make_event(queue_id=f"{prefix}{name}").to_json() + "\n"
                   for name in names).encode()


_FAILED = "audit database unavailable (ObjectNotInPrerequisiteStateError)"


@pytest.mark.postgres
def test_events_a_replay_dropped_stay_dropped_after_a_kill_mid_replay(
        tmp_path: Path, database_url: str) -> None:
    prefix = f"4QR{time.monotonic_ns() % 10**8}X"
    spooled = _lines(prefix, ["0stored", "1refused", "2slow", "3outage", "4after"])
    _killed_mid_replay(tmp_path, database_url, prefix, spooled, (
        "refused by Postgres (DataError): dropped", "DROPPED: not written", _FAILED))
    assert _stored(database_url, prefix) == [f"{prefix}0stored"]
    said = _restarted(tmp_path, database_url, prefix)
    assert _stored(database_url, prefix) == [
        f"{prefix}{name}" for name in ("0stored", "3outage", "4after")]
    assert "refused by Postgres" not in said


@pytest.mark.postgres
def test_a_damaged_line_is_counted_lost_once_across_a_kill_mid_replay(
        tmp_path: Path, database_url: str) -> None:
    """Counted (and logged) once by a process, but again by each start after a kill."""
    prefix = f"4QU{time.monotonic_ns() % 10**8}X"
    damaged = b'{"event_id": "\x00\x00\x00 not an event\n'
    spooled = damaged + _lines(prefix, ["3outage", "4after"])
    _killed_mid_replay(tmp_path, database_url, prefix, spooled,
                       ("skipping an unreadable line at offset 0", _FAILED))
    said = _restarted(tmp_path, database_url, prefix)
    assert _stored(database_url, prefix) == [f"{prefix}3outage", f"{prefix}4after"]
    assert "unreadable" not in said


@pytest.mark.postgres
def test_a_start_after_a_kill_mid_replay_goes_on_where_the_replay_got_to(
        tmp_path: Path, database_url: str) -> None:
    """Not from the spool's beginning: the batch stored before the kill is not written
    again (the test deletes its rows to see it: they stay away)."""
    prefix = f"4QV{time.monotonic_ns() % 10**8}X"
    spooled = _lines(prefix, ["0a", "0b", "0c", "3outage", "4after"])
    _killed_mid_replay(tmp_path, database_url, prefix, spooled, (_FAILED,))
    assert _stored(database_url, prefix) == [f"{prefix}0{name}" for name in "abc"]
    position = tmp_path / "spool" / "audit-spool.jsonl.replayed"
    assert position.exists()
    asyncio.run(_execute(database_url, "DELETE FROM audit_events WHERE queue_id LIKE $1",
                         f"{prefix}0%"))
    _restarted(tmp_path, database_url, prefix)
    assert _stored(database_url, prefix) == [f"{prefix}3outage", f"{prefix}4after"]
    assert not position.exists()  # the spool emptied, replayed to its end


def test_a_replay_position_is_not_taken_for_another_file(tmp_path: Path) -> None:
    """The spool emptied by hand and filled again past where a replay got: replayed from
    its start, else the new events before that offset would be skipped."""
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    spool.append([make_event() for _ in range(3)])
    spool.replayed_to(spool.size)
    assert AuditSpool(tmp_path, SpoolBudget(10**9)).replayed == spool.size
    spool.path.write_bytes(_lines("4QW", ["a", "b", "c", "d"]))
    assert AuditSpool(tmp_path, SpoolBudget(10**9)).replayed == 0
