"""SIGHUP storms: a deploy script that signals once per file it changed, `kill -HUP` in a
loop. The milter keeps serving, reloads, and stops on the SIGTERM after them.

Its signal handler ran inside another when signals came back to back: one took an
Event's lock and the next waited for it forever (a SIGTERM then stopped nothing, until
systemd's SIGKILL), or they nested until a RecursionError ended the milter. With worker
processes, the parent passed each SIGHUP on (as SIGUSR1) and the workers died of it.

A single process is stormed with SIGUSR1, which reloads it as SIGHUP does (a worker
gets it from its parent): a SIGHUP that arrives while its handler runs (the signal
blocked on the main thread) can go to libmilter's own signal thread instead, which
stops the milter (app.py: it exits 1 for the service manager to restart it)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.fixtures.postgres import wait_until
from tests.milter.test_policy_poll import _verdict
from tests.milter.test_process import _env, _serving

STORM_SECONDS = 2.0
STORM_MAX = 2_000_000  # signals, whatever comes first


def _storm(pid: int, signum: signal.Signals) -> int:
    """``signum`` to ``pid`` as fast as we can, for STORM_SECONDS; how many were sent."""
    sent, until = 0, time.monotonic() + STORM_SECONDS
    while sent < STORM_MAX and time.monotonic() < until:
        os.kill(pid, signum)
        sent += 1
    return sent


@pytest.mark.parametrize(("processes", "signum"), [
    pytest.param(1, signal.SIGUSR1, id="one-process"),
    pytest.param(2, signal.SIGHUP, id="workers"),
])
def test_a_storm_of_reloads_leaves_it_serving_and_stoppable(
    tmp_path: Path, processes: int, signum: signal.Signals
) -> None:
    env = _env(tmp_path, processes=str(processes))
    log = tmp_path / "milter.log"
    with _serving(env, log) as proc:
        assert wait_until(lambda: "starting" in log.read_text(), timeout=30), log.read_text()
        assert _verdict(env, "4QSTORM1") == b"c"
        assert _storm(proc.pid, signum) > 1000
        assert proc.poll() is None, log.read_text()[-3000:]
        assert _verdict(env, "4QSTORM2") == b"c"
        # The reloads the storm asked for are done.
        assert wait_until(lambda: log.read_text().count("policy set reloaded (signal)")
                          >= processes, timeout=20), log.read_text()[-3000:]
        proc.terminate()
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
