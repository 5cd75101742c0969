"""A demo or a test run stopped by SIGTERM (a CI job cancelled or timed out) or SIGHUP
(its terminal closed) stops the PostgreSQL cluster, Postfix and milter it started and
removes their directories, as Ctrl-C does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.fixtures import milterproc, postfix, postgres
from tests.fixtures.postfix import send_message, wait_for
from tests.fixtures.signals import interrupt_on_termination

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


@pytest.mark.parametrize(("signum", "when"), [
    (signal.SIGTERM, "starting a private Postfix"),
    (signal.SIGHUP, "starting a private Postfix"),
    # While the 11 MB message goes out, the one sent after this line.
    (signal.SIGTERM, "Executable attachments are not accepted"),
], ids=["TERM", "HUP", "TERM-sending"])
def test_demo_stopped_by_a_signal_stops_what_it_started(
    scratch: Path, signum: int, when: str
) -> None:
    demo = [sys.executable, str(REPO / "contrib" / "demo" / "demo.py")]
    started = time.monotonic()
    code = _interrupt_once(demo, scratch, signum, when)
    assert code == 130
    assert time.monotonic() - started < 45  # not a minute's wait for a reply to QUIT
    # Postfix's master leaves a moment after its stop command returns.
    wait_for(lambda: not _started_in(scratch), timeout=15)
    assert list(scratch.iterdir()) == []


# Each server's object, made as the demo and the fixtures make it.
MADE: dict[ModuleType, Callable[[], object]] = {
    postfix: lambda: postfix.PostfixInstance(relay_port=25),
    postgres: postgres.PostgresCluster,
    milterproc: lambda: milterproc.MilterProcess(REPO / "policies" / "examples"),
}


def _interrupted() -> int:
    raise KeyboardInterrupt("SIGTERM")  # as tests/fixtures/signals.py raises it


@pytest.mark.parametrize("module", [postfix, postgres, milterproc])
def test_a_server_interrupted_while_it_is_made_leaves_no_directory(
    scratch: Path, monkeypatch: pytest.MonkeyPatch, module: ModuleType
) -> None:
    """A signal after the server's directory was made, before the object was whole: no
    destroy() can run for an object never returned (the demo stopped as it started its
    private Postfix left the instance's directory so)."""
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(module, "free_port", _interrupted)
    with pytest.raises(KeyboardInterrupt):
        MADE[module]()
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("module", [postfix, postgres, milterproc])
def test_a_signal_as_a_servers_directory_is_made_leaves_no_directory(
    scratch: Path, monkeypatch: pytest.MonkeyPatch, module: ModuleType
) -> None:
    """SIGTERM (SIGHUP alike) right after mkdir, before the ``try`` that would remove the
    directory was entered: held until then (the demo's HUP left an empty one so)."""
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    made = tempfile.mkdtemp

    def made_then_stopped(prefix: str) -> str:
        path = made(prefix=prefix)
        signal.raise_signal(signal.SIGTERM)  # tests/conftest.py: raises KeyboardInterrupt
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", made_then_stopped)
    with pytest.raises(KeyboardInterrupt):
        MADE[module]()
    assert list(scratch.iterdir()) == []
    interrupt_on_termination()  # the handlers' second-signal guard spent: as before


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


def test_a_transaction_interrupted_is_not_followed_by_quit() -> None:
    """Interrupted while it waits for the reply to its message, send_message hangs up at
    once. smtplib's own context manager said QUIT on the way out and waited for a reply
    that never came, as the server still read the message (the demo, stopped while it
    sent one, went on a minute later, or took the 250 for the reply to QUIT and went on
    as if never stopped)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        heard: list[bytes] = []
        thread = threading.Thread(target=_answer_all_but_data, args=(server, heard))
        thread.start()
        previous = signal.signal(signal.SIGALRM, _interrupt)
        started = time.monotonic()
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.5)
            with pytest.raises(KeyboardInterrupt):
                send_message(server.getsockname()[1], b"Subject: x\r\n\r\nhi\r\n",
                             "a@example.org", ["b@example.net"], timeout=10)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        elapsed = time.monotonic() - started
        thread.join(15)
    assert elapsed < 5
    assert b"quit" not in b"".join(heard).lower()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _answer_all_but_data(server: socket.socket, heard: list[bytes]) -> None:
    """A server that answers every command but leaves the message after DATA unanswered,
    keeping what it hears until the client hangs up."""
    conn, _ = server.accept()
    with conn:
        conn.settimeout(15)
        conn.sendall(b"220 scripted\r\n")
        reader = conn.makefile("rb")
        for line in reader:
            if line.lower().startswith(b"data"):
                conn.sendall(b"354 go on\r\n")
                heard.extend(reader)  # until EOF: the client closed
                return
            conn.sendall(b"250 ok\r\n")
