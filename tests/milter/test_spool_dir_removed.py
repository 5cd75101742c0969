"""spool_dir removed while the milter runs (an rm -r, a cleanup job) in an outage of
Postgres: nothing made it again, so neither the journal nor the spool took an event,
and with `spool_full_action: tempfail` every message was refused until someone made
the directory or restarted the milter. The writer makes it again, as a start does."""

from __future__ import annotations

import os
import shutil
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from postwarden_milter.audit_pipeline import AuditPipeline
from postwarden_milter.errors import StartupError
from postwarden_milter.metrics import Metrics
from postwarden_milter.settings import SpoolFullAction
from postwarden_milter.spool import SPOOL_NAME
from postwarden_milter.startup_checks import claim_spool_dir
from tests.fixtures.postgres import wait_until
from tests.fixtures.processes import children_of
from tests.milter.test_audit_unstorable import journaled_pipeline
from tests.milter.test_process import _env, _serving
from tests.store.test_audit import UNREACHABLE, make_event


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def refusing_pipeline(tmp_path: Path, metrics: Metrics) -> Iterator[AuditPipeline]:
    """A writer in an outage of Postgres, journaling, that tempfails what it cannot keep."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(0o700)
    with journaled_pipeline(UNREACHABLE, spool_dir, metrics, SpoolFullAction.TEMPFAIL) as pipeline:
        yield pipeline


def test_a_spool_dir_removed_in_an_outage_is_made_again(
        refusing_pipeline: AuditPipeline, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    spool_dir = tmp_path / "spool"
    assert refusing_pipeline.submit(make_event(), refusable=True)
    assert wait_until((spool_dir / SPOOL_NAME).exists, timeout=10)
    shutil.rmtree(spool_dir)
    event = make_event()
    # Refused while the directory is away; taken once the writer made it again.
    assert wait_until(lambda: refusing_pipeline.submit(event, refusable=True), timeout=10)
    assert wait_until(lambda: event.event_id in _spooled(spool_dir), timeout=10)
    assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700
    assert spool_dir.stat().st_uid == os.getuid()
    with pytest.raises(StartupError, match="another milter runs with it"):
        claim_spool_dir(spool_dir)  # held, as a start holds it
    assert caplog.text.count(f"spool_dir {spool_dir} was removed while the milter ran: "
                             "made again (mode 0700)") == 1


def test_a_spool_dir_removed_again_and_again_leaves_no_descriptor_open(
        refusing_pipeline: AuditPipeline, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The writer locked each directory it made again with a descriptor of its own and
    never closed the one before: one leaked for each removal, for the process's life."""
    spool_dir = tmp_path / "spool"
    for made in range(1, 4):
        shutil.rmtree(spool_dir)
        assert wait_until(lambda made=made: caplog.text.count(
            f"spool_dir {spool_dir} was removed while the milter ran") == made, timeout=10)
    assert _descriptors_of(spool_dir) >= 1  # the lock on the one there now
    assert _descriptors_of(Path(f"{spool_dir} (deleted)")) == 0


def _descriptors_of(path: Path) -> int:
    """How many of this process's descriptors are open on ``path`` (as /proc names it)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:  # closed meanwhile (listdir's own, another thread's)
            continue
    return count


def test_a_spool_dir_made_again_stays_locked_once_the_worker_that_made_it_died(
        tmp_path: Path) -> None:
    """The lock on the new directory was the writer's that made it: once that worker
    died, its replacement did not take it again, and a second milter could start with
    the running one's spool_dir (and adopt its spools). The supervisor holds it now, as
    a start holds it."""
    spool_dir = tmp_path / "spool"
    log_path = tmp_path / "milter.log"
    with _serving(_env(tmp_path, processes="2"), log_path) as proc:
        assert wait_until(lambda: log_path.read_text().count("starting on") == 2, timeout=30)
        shutil.rmtree(spool_dir)
        assert wait_until(lambda: "was removed while the milter ran: made again"
                          in log_path.read_text(), timeout=10)
        for pid in children_of(proc.pid):  # the worker that made it among them
            os.kill(pid, signal.SIGKILL)
        # Replaced: both started again (after the supervisor looked at spool_dir).
        assert wait_until(lambda: log_path.read_text().count("starting on") == 4,
                          timeout=30), log_path.read_text()
        with pytest.raises(StartupError, match="another milter runs with it"):
            claim_spool_dir(spool_dir)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert log_path.read_text().count("made again") == 1  # by one worker, not each


def test_a_spool_dir_that_cannot_be_made_again_is_said_with_what_to_do(
        refusing_pipeline: AuditPipeline, metrics: Metrics, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A link to another disk's directory, removed there: said, once (a minute)."""
    spool_dir = tmp_path / "spool"
    shutil.rmtree(spool_dir)
    spool_dir.symlink_to(tmp_path / "other-disk" / "spool")
    said = f"spool_dir {spool_dir} was removed and cannot be made again (File exists)"
    # Tried at each turn of the writer (every 0.2 s): a few of them.
    assert wait_until(lambda: (metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "audit_spool"}) or 0) >= 3, timeout=10)
    assert "create it (mode 0700, owned by the milter's user) or restart" in caplog.text
    assert caplog.text.count(said) == 1


def _spooled(spool_dir: Path) -> str:
    try:
        return (spool_dir / SPOOL_NAME).read_text()
    except FileNotFoundError:
        return ""
