"""A demo or a test run stopped by SIGTERM (a CI job cancelled or timed out) or SIGHUP
(its terminal closed) stops the PostgreSQL cluster, Postfix and milter it started and
removes their directories, as Ctrl-C does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.postfix import wait_for

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.postgres, pytest.mark.postfix]


def _started_in(tmp: Path) -> list[str]:
    """The command lines of processes that name a path under ``tmp`` (the cluster's
    postgres) or run there (Postfix's master, the milter's spool)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
            continue
        if str(tmp) in cmdline or str(tmp).encode() in environ:
            found.append(cmdline)
    return found


def _interrupt_once(argv: list[str], tmp: Path, signum: int, when: str) -> int:
    """Run ``argv`` with TMPDIR ``tmp``, send ``signum`` once its output shows ``when``,
    and return its exit code."""
    output = tmp.parent / f"{tmp.name}.out"
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": os.pathsep.join(sys.path)}
    with output.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: when in output.read_text() or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, output.read_text()
        proc.send_signal(signum)
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A TMPDIR for the run; not under tmp_path, which user postgres cannot reach."""
    with tempfile.TemporaryDirectory(prefix="postwarden-interrupted-") as parent:
        tmp = Path(parent) / "tmp"
        tmp.mkdir()
        Path(parent).chmod(0o755)
        tmp.chmod(0o755)
        yield tmp


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_demo_stopped_by_a_signal_stops_what_it_started(scratch: Path, signum: int) -> None:
    demo = [sys.executable, str(REPO / "contrib" / "demo" / "demo.py")]
    code = _interrupt_once(demo, scratch, signum, "starting a private Postfix")
    assert code == 130
    # Postfix's master leaves a moment after its stop command returns.
    wait_for(lambda: not _started_in(scratch), timeout=15)
    assert list(scratch.iterdir()) == []


def test_test_run_stopped_by_sigterm_stops_its_cluster(scratch: Path) -> None:
    (scratch.parent / "test_waits.py").write_text(
        "import time\n\n\n"
        "def test_waits(pg_server):\n"
        "    print('cluster started', flush=True)\n"
        "    time.sleep(60)\n"
    )
    # The fixtures of tests/conftest.py, for a test outside tests/.
    pytest_run = [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider",
                  "-p", "tests.conftest", str(scratch.parent / "test_waits.py")]
    _interrupt_once(pytest_run, scratch, signal.SIGTERM, "cluster started")
    assert not _started_in(scratch)  # pg_ctl stop waits for the server
    assert list(scratch.iterdir()) == []
