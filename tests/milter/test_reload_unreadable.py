"""A policy_dir that cannot be listed (its mode changed, say) is a set that does not
load, refused as any broken one: a reload keeps the running set, with worker processes
too; ``check`` and a start exit 2 with one line naming it; the poll says so once, not at
each poll.

Root lists a mode-000 directory all the same (CAP_DAC_OVERRIDE): files are read as user
nobody here, by this thread (setfsuid) or by the milter (setpriv)."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.reload import PolicyFiles, PolicyReloader
from postwarden_policies import PolicyLoadError
from tests.fixtures.notify import Notice, NotifySocket
from tests.fixtures.postgres import wait_until
from tests.milter.test_process import _env
from tests.milter.test_reload import POLICY

NOBODY = 65534
AS_ROOT = os.geteuid() == 0
MILTER = [*(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
            if AS_ROOT else []), sys.executable, "-m", "postwarden_milter"]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory user nobody can reach and write (pytest's tmp_path is root's alone),
    with a policy directory in it."""
    root = Path(tempfile.mkdtemp(prefix="postwarden-unreadable-"))
    root.chmod(0o755)
    if AS_ROOT:
        os.chown(root, NOBODY, NOBODY)
    (root / "policies").mkdir()
    (root / "policies" / "main.yaml").write_text(POLICY.format(name="main", limit=5))
    yield root
    shutil.rmtree(root)


@contextmanager
def _as_nobody() -> Iterator[None]:
    """File access as nobody inside, for this thread (an fsuid other than 0 drops root's
    file capabilities)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if AS_ROOT:
        libc.setfsuid(NOBODY)
    try:
        yield
    finally:
        if AS_ROOT:
            libc.setfsuid(0)


@contextmanager
def _unlistable(policy_dir: Path) -> Iterator[None]:
    """``policy_dir`` cannot be listed by this thread inside: mode 000, and file access
    as nobody."""
    policy_dir.chmod(0)
    try:
        with _as_nobody():
            with pytest.raises(PermissionError):  # or the test would prove nothing
                os.listdir(policy_dir)
            yield
    finally:
        policy_dir.chmod(0o755)


def _cannot_read(policy_dir: Path) -> str:
    return f"{policy_dir}: cannot read: Permission denied"


def test_it_does_not_load_and_names_the_directory(shared_dir: Path) -> None:
    policy_dir = shared_dir / "policies"
    files = PolicyFiles(policy_dir)
    files.load()
    with _unlistable(policy_dir), pytest.raises(PolicyLoadError) as refused:
        files.load()
    assert [str(issue) for issue in refused.value.issues] == [_cannot_read(policy_dir)]


def test_a_reload_refuses_it_and_the_poll_says_so_once(
    shared_dir: Path, loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy_dir = shared_dir / "policies"
    reloader = PolicyReloader(Metrics(), spool_dir=shared_dir, policy_dir=policy_dir,
                              database_url=None, poll_seconds=0, loop_thread=loop_thread,
                              instance_name="mx-test")
    holder = reloader.load_initial()
    running = holder.current
    caplog.set_level(logging.INFO, logger="postwarden_milter.reload")
    caplog.clear()

    def said() -> list[tuple[str, str]]:
        return [(record.levelname, record.getMessage()) for record in caplog.records
                if record.name == "postwarden_milter.reload"]

    with _unlistable(policy_dir):
        assert not reloader.reload("signal")
        for _ in range(3):
            reloader.poll_files()
    assert holder.current is running
    assert said() == [
        ("ERROR", "policy reload (signal) refused, keeping the running set: "
                  f"policy did not load: {_cannot_read(policy_dir)}"),
        ("WARNING", f"policy_dir: {_cannot_read(policy_dir)}; the running set stays"),
    ]
    caplog.clear()
    reloader.poll_files()  # readable again, and as last read: nothing to load
    (policy_dir / "main.yaml").write_text(POLICY.format(name="main", limit=7))
    reloader.poll_files()  # the edit seen
    reloader.poll_files()  # and settled: loaded
    assert holder.current.limits.max_recipients == 7
    assert [message for _, message in said()][:1] == [f"policy_dir {policy_dir}: readable again"]


def test_a_file_made_readable_is_loaded_by_the_poll(
    shared_dir: Path, loop_thread: LoopThread,
) -> None:
    """A file added with a mode the milter may not read refuses the set; the chmod that
    fixes it changes neither its content nor its mtime, and is a change all the same."""
    policy_dir = shared_dir / "policies"
    reloader = PolicyReloader(Metrics(), spool_dir=shared_dir, policy_dir=policy_dir,
                              database_url=None, poll_seconds=0, loop_thread=loop_thread,
                              instance_name="mx-test")
    holder = reloader.load_initial()
    added = policy_dir / "added.yaml"
    added.write_text(POLICY.format(name="added", limit=3))
    added.chmod(0)

    def poll() -> list[str]:
        with _as_nobody():
            for _ in range(2):  # a change seen, then settled: loaded
                reloader.poll_files()
        return sorted(p.name for p in holder.current.policies)

    assert poll() == ["main"]  # refused: added.yaml cannot be read
    added.chmod(0o644)
    assert poll() == ["added", "main"]


def _run_unlistable(shared_dir: Path, command: list[str], processes: str
                    ) -> subprocess.CompletedProcess[str]:
    """The milter's ``command``, as nobody, with a policy_dir it cannot list."""
    env = _env(shared_dir, processes=processes)
    (shared_dir / "policies").chmod(0)
    return subprocess.run([*MILTER, *command], env=env, cwd=shared_dir, capture_output=True,
                          text=True, timeout=60, check=False)


def _refused(shared_dir: Path) -> str:
    return "postwarden-milter: policies do not load: " + _cannot_read(shared_dir / "policies")


def test_check_exits_2_with_one_line(shared_dir: Path) -> None:
    result = _run_unlistable(shared_dir, ["check"], "1")
    assert (result.returncode, result.stderr.splitlines()) == (2, [_refused(shared_dir)])


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_start_exits_2_naming_it(shared_dir: Path, processes: str) -> None:
    result = _run_unlistable(shared_dir, [], processes)
    assert result.returncode == 2, result.stderr
    assert _refused(shared_dir) in result.stderr.splitlines(), result.stderr  # and log lines
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("processes", [1, 2])
def test_sighup_keeps_the_running_set_and_the_milter(shared_dir: Path, processes: int) -> None:
    policy_dir = shared_dir / "policies"
    log_path = shared_dir / "milter.log"
    with NotifySocket(str(shared_dir / "notify")) as systemd:
        (shared_dir / "notify").chmod(0o666)  # for the milter, run as nobody
        env = _env(shared_dir, processes=str(processes), policy_poll_seconds="0.1")
        env["NOTIFY_SOCKET"] = systemd.address
        with log_path.open("wb") as out:
            proc = subprocess.Popen(MILTER, env=env, cwd=shared_dir, stdout=out,
                                    stderr=subprocess.STDOUT)
        try:
            assert systemd.receive() == Notice("READY=1", proc.pid), log_path.read_text()
            policy_dir.chmod(0)
            proc.send_signal(signal.SIGHUP)
            assert systemd.receive() == Notice("RELOADING=1", proc.pid)
            assert systemd.receive() == Notice("READY=1", proc.pid), log_path.read_text()
            log = log_path.read_text()
            assert log.count("policy reload (signal) refused, keeping the running set: "
                             f"policy did not load: {_cannot_read(policy_dir)}") == processes
            # Each process polling (the parent of workers keeps its copy in step) says
            # it once, then loads an edit once the directory is readable again.
            warning = f"policy_dir: {_cannot_read(policy_dir)}; the running set stays"
            polling = processes + (processes > 1)
            assert wait_until(lambda: log_path.read_text().count(warning) == polling,
                              timeout=15), log_path.read_text()
            policy_dir.chmod(0o755)
            (policy_dir / "main.yaml").write_text(POLICY.format(name="main", limit=6))
            assert wait_until(lambda: log_path.read_text().count(
                "policy set reloaded (file change)") == processes, timeout=20)
            log = log_path.read_text()
            assert log.count(warning) == polling and "Traceback" not in log, log
            proc.send_signal(signal.SIGTERM)
            assert systemd.receive() == Notice("STOPPING=1", proc.pid)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
