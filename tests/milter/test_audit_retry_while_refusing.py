"""While a full spool refuses mail, the audit writer tries Postgres again every second,
not on its backoff (up to RETRY_MAX): only its replay ends the refusal. It says so once
a minute. Otherwise the backoff is kept. Driven by a clock of the test's, not by waiting."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from postwarden_milter.audit_pipeline import AuditPipeline
from postwarden_milter.backoff import REFUSING_RETRY
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.settings import SpoolFullAction
from postwarden_milter.spool import AuditSpool, SpoolBudget
from postwarden_policies.occasional import INTERVAL
from tests.fixtures.postgres import wait_until
from tests.milter.test_log_once_a_minute import Clock
from tests.store.test_audit import UNREACHABLE, make_event

RETRY = re.compile(r"audit database unavailable \(\w+\); spooling, retry in ([\d.]+) s"
                   r"(?: \(tries failed: (\d+) (?:so far|in the last \d+ s)\))?")
IDLE = 0.6  # real seconds: three polls of the writer (FLUSH_SECONDS)


class Writer:
    """A pipeline with a backlog, Postgres down and the test's clock."""

    def __init__(self, spool_dir: Path, budget: SpoolBudget,
                 caplog: pytest.LogCaptureFixture) -> None:
        self.clock, self.metrics, self._caplog = Clock(), Metrics(), caplog
        self.spool = AuditSpool(spool_dir, budget)
        self.spool.append([make_event()])
        self.pipeline = AuditPipeline(UNREACHABLE, self.spool, self.metrics, queue_size=100,
                                      spool_full_action=SpoolFullAction.TEMPFAIL,
                                      clock=self.clock)

    @property
    def attempts(self) -> float:
        return self.metrics.registry.get_sample_value(
            "postwarden_errors_total", {"kind": "audit_db"}) or 0

    def tries_at(self, now: float) -> bool:
        """The writer tries again soon once the clock says ``now``."""
        before = self.attempts
        self.clock.now = now
        return wait_until(lambda: self.attempts == before + 1, timeout=5)

    def waits_at(self, now: float) -> bool:
        """The writer does not try again with the clock at ``now``."""
        before = self.attempts
        self.clock.now = now
        return not wait_until(lambda: self.attempts > before, timeout=IDLE)

    def waits_logged(self) -> list[float]:
        return [float(m[1]) for m in RETRY.finditer(self._caplog.text)]

    def failures_logged(self) -> list[int | None]:
        return [m[2] and int(m[2]) for m in RETRY.finditer(self._caplog.text)]


@contextmanager
def _writer(tmp_path: Path, budget: SpoolBudget,
            caplog: pytest.LogCaptureFixture) -> Iterator[Writer]:
    caplog.set_level(logging.WARNING)
    writer = Writer(tmp_path, budget, caplog)
    loop = LoopThread()
    loop.start()
    writer.pipeline.start(loop)
    try:
        assert wait_until(lambda: writer.attempts == 1, timeout=5)  # at once
        yield writer
    finally:
        writer.pipeline.stop()
        loop.stop()


def test_while_mail_is_refused_the_writer_tries_every_second(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with _writer(tmp_path, SpoolBudget(1), caplog) as writer:  # full from the start
        assert writer.pipeline.refusing_mail
        start = writer.clock.now
        for second in range(1, 9):  # the backoff alone would be at 30 s by now
            assert writer.tries_at(start + second * REFUSING_RETRY), second
        # A line a second would flood the log: said once a minute, with a count.
        assert writer.tries_at(start + INTERVAL)
    assert writer.waits_logged() == [0.5, REFUSING_RETRY]
    assert writer.failures_logged() == [1, 9]


def test_a_spool_full_since_the_retry_was_scheduled_cuts_the_wait(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    budget = SpoolBudget(10**9)
    with _writer(tmp_path, budget, caplog) as writer:
        start = writer.clock.now
        # Mail flows: the backoff as ever, 0.5, 1, 2 s, then 4 s from start + 3.5.
        for at in (0.5, 1.5, 3.5):
            assert writer.waits_at(start + at - 0.1)
            assert writer.tries_at(start + at)
        assert writer.waits_at(start + 3.5 + 2 * REFUSING_RETRY)
        before = writer.attempts
        budget.max_bytes = writer.spool.size  # full now: mail is refused
        assert writer.pipeline.refusing_mail
        assert wait_until(lambda: writer.attempts == before + 1, timeout=5)
    assert writer.waits_logged() == [0.5, 1.0, 2.0, 4.0, REFUSING_RETRY]
    assert writer.failures_logged() == [None, None, None, None, 1]
