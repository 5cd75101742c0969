"""On a bad day a line per refused MAIL FROM or per dropped batch would bury the log:
each is said at once, then at most once a minute with how many happened since it was
last said, and how long ago that was; the metrics still count every one."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import asyncpg
import Milter
import pytest

from postwarden_milter import audit_pipeline
from postwarden_milter.audit_pipeline import AuditPipeline
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.session import Slots
from postwarden_milter.settings import SpoolFullAction
from postwarden_milter.spool import AuditSpool, SpoolBudget, spool_name
from postwarden_policies.occasional import INTERVAL, Occasional, Tally
from tests.fixtures.postgres import wait_until
from tests.milter.conftest import Harness
from tests.milter.milterclient import MilterClient
from tests.milter.test_process import _env, _serving
from tests.store.test_audit import UNREACHABLE, make_event


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_line_is_due_at_once_then_once_an_interval_with_the_count_since() -> None:
    clock = Clock()
    occasional = Occasional(clock=clock)
    assert occasional.due("a") == Tally(1, None)
    assert [occasional.due("a") for _ in range(3)] == [None] * 3
    assert occasional.due("b", 5) == Tally(5, None)  # each key on its own
    clock.now += INTERVAL - 1
    assert occasional.due("a") is None
    clock.now += 1
    assert occasional.due("a", 2) == Tally(6, INTERVAL)  # 1 + 3 + 2 since it was said
    assert occasional.due("a") is None
    clock.now += 86400  # a quiet day: the count says over how long it gathered
    tally = occasional.due("a")
    assert (tally, str(tally)) == (Tally(2, 86400), "2 in the last 86400 s")
    assert str(Tally(1, None)) == "1 so far"


def test_what_was_counted_since_its_line_is_had_once_for_a_stop() -> None:
    clock = Clock()
    occasional = Occasional(clock=clock)
    occasional.due("a")
    occasional.due("b", 3)
    clock.now += 10
    occasional.due("a", 2)
    clock.now += 5
    assert occasional.unsaid() == {"a": Tally(2, 15)}  # "b" said all it counted
    assert occasional.unsaid() == {}
    clock.now += INTERVAL - 1
    assert occasional.due("a") is None  # had for the stop: said, as far as the due goes


def test_threads_counting_together_lose_no_count() -> None:
    clock = Clock()
    occasional = Occasional(clock=clock)
    occasional.due("a")

    def count() -> None:
        for _ in range(1000):
            occasional.due("a")

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clock.now += INTERVAL
    assert occasional.due("a", 0) == Tally(8000, INTERVAL)


def _lines(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


def test_full_spool_refusals_are_said_once_a_minute_and_all_counted(
    harness: Harness, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    harness.use(occasional=Occasional(clock=clock))
    harness.audit.refusing_mail = True
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        assert harness.connect()._envfrom("<alice@example.org>") == Milter.TEMPFAIL
    clock.now += INTERVAL
    assert harness.connect()._envfrom("<alice@example.org>") == Milter.TEMPFAIL
    assert _lines(caplog, "audit spool full") == [
        "audit spool full: tempfailing new mail (refused: 1 so far)",
        "audit spool full: tempfailing new mail (refused: 5 in the last 60 s)",
    ]
    assert harness.metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "spool_full"}) == 6


def test_overload_refusals_are_said_once_a_minute_and_all_counted(
    harness: Harness, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    harness.use(slots=Slots(1), occasional=Occasional(clock=clock))
    caplog.set_level(logging.WARNING)
    first = harness.connect()
    assert first._envfrom("<alice@example.org>") == Milter.CONTINUE
    assert first._envrcpt("<bob@example.net>") == Milter.CONTINUE
    first._header("Subject", " hello")  # holds the only slot
    for n in range(4):
        ctx = harness.connect(ip=f"192.0.2.{20 + n}")
        assert ctx._envfrom("<carol@example.org>") == Milter.TEMPFAIL
    clock.now += INTERVAL
    assert harness.connect(ip="192.0.2.30")._envfrom("<dave@example.org>") == Milter.TEMPFAIL
    assert _lines(caplog, "overloaded") == [
        "overloaded (1 transactions): refusing one from 192.0.2.20 (refused: 1 so far)",
        "overloaded (1 transactions): refusing one from 192.0.2.30 (refused: 4 in the last "
        "60 s)",
    ]
    assert harness.metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "overload"}) == 5


def _full(spool_dir: Path) -> AuditSpool:
    spool = AuditSpool(spool_dir, SpoolBudget(1))
    spool.append([make_event()])  # full: no database to drain it
    return spool


def _failing(spool_dir: Path) -> AuditSpool:
    os.symlink("/dev/full", spool_dir / spool_name(0))  # ENOSPC, as a full filesystem
    return AuditSpool(spool_dir, SpoolBudget(10**9))


@pytest.mark.parametrize(("spool", "reason", "line"), [
    pytest.param(_full, "spool_full", "AUDIT SPOOL FULL", id="full"),
    pytest.param(_failing, "spool_error", "cannot append to the audit spool", id="failing"),
])
def test_events_dropped_are_said_once_a_minute_and_all_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, spool: Callable[[Path], AuditSpool],
    reason: str, line: str,
) -> None:
    clock, metrics = Clock(), Metrics()

    def dropped() -> float:
        return metrics.registry.get_sample_value(
            "postwarden_audit_dropped_total", {"reason": reason}) or 0

    loop = LoopThread()
    loop.start()
    pipeline = AuditPipeline(UNREACHABLE, spool(tmp_path), metrics, queue_size=100,
                             spool_full_action=SpoolFullAction.DROP, clock=clock)
    pipeline.start(loop)
    try:
        for n in range(1, 5):  # one batch each
            pipeline.submit(make_event())
            assert wait_until(lambda n=n: dropped() == n, timeout=5)
        clock.now += INTERVAL
        pipeline.submit(make_event())
        assert wait_until(lambda: dropped() == 5, timeout=5)
        pipeline.submit(make_event())  # dropped after its line: said by the stop
        assert wait_until(lambda: dropped() == 6, timeout=5)
        clock.now += 7
    finally:
        pipeline.stop()
        loop.stop()
    assert [said.split("): ", 1)[1] for said in _lines(caplog, line)] == [
        "events dropped: 1 so far", "events dropped: 4 in the last 60 s"]
    kind = "spool full" if reason == "spool_full" else "spool unwritable"
    assert _lines(caplog, "not logged before the stop") == [
        f"not logged before the stop: audit events dropped ({kind}): 1 in the last 7 s"]


@pytest.mark.postgres
def test_reconnects_while_mail_is_refused_are_said_once_a_minute(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Postgres takes connections but no writes (a full disk, a read-only standby) while
    a full spool refuses mail: the writer reconnects every second, and says so once a
    minute."""

    async def no_writes(*_args: object) -> None:
        raise asyncpg.DiskFullError("could not extend file: No space left on device")

    monkeypatch.setattr(audit_pipeline, "write_audit_batch", no_writes)
    clock, metrics = Clock(), Metrics()
    spool = AuditSpool(tmp_path, SpoolBudget(1))
    spool.append([make_event()])  # full: mail is refused until the writer drains it

    def tries() -> float:
        return metrics.registry.get_sample_value(
            "postwarden_errors_total", {"kind": "audit_db"}) or 0

    caplog.set_level(logging.INFO, logger="postwarden_milter")
    loop = LoopThread()
    loop.start()
    pipeline = AuditPipeline(database_url, spool, metrics, queue_size=100,
                             spool_full_action=SpoolFullAction.TEMPFAIL, clock=clock)
    pipeline.start(loop)
    try:
        assert wait_until(lambda: tries() == 1, timeout=10)
        for second in range(1, 6):
            clock.now += 1
            assert wait_until(lambda second=second: tries() == second + 1, timeout=10)
        clock.now += INTERVAL
        assert wait_until(lambda: tries() == 7, timeout=10)
    finally:
        pipeline.stop()
        loop.stop()
    assert _lines(caplog, "audit writer connected") == [
        "audit writer connected to Postgres (connects while mail is refused: 1 so far)",
        "audit writer connected to Postgres (connects while mail is refused: 6 in the last "
        "65 s)",
    ]


def test_refusals_counted_since_their_line_are_said_when_the_milter_stops(
    tmp_path: Path,
) -> None:
    """The lines said once a minute leave a count unsaid until the next one: a stop says
    it, in the milter process itself (which owns the refusals' tally)."""
    env = _env(tmp_path, max_concurrency="1")
    log_path = tmp_path / "milter.log"
    with _serving(env, log_path) as proc:
        assert wait_until(lambda: "starting on" in log_path.read_text(), timeout=30)
        spec = env["POSTWARDEN_MILTER_SOCKET"]
        holder = MilterClient(spec).open()
        begun = holder.begin("4QHOLD")  # its headers hold the only slot
        assert begun is None or begun[0] == b"c", begun
        for queue_id in ("4QONE", "4QTWO", "4QTHREE"):
            client = MilterClient(spec).open()
            refused = client.begin(queue_id)
            client.close()
            assert refused is not None and refused[1].startswith(b"421 4.3.2"), refused
        assert holder.finish("4QHOLD")[0] == b"c"
        holder.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    text = log_path.read_text()
    assert "(refused: 1 so far)" in text
    assert re.search(r"not logged before the stop: MAIL FROM refused \(overloaded\): 2 in "
                     r"the last \d+ s\n", text), text
