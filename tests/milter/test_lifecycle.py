"""The milter process's life around mail: signals while it starts, a stop with
connections open, a second start on the same socket, workers that die."""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import pytest

from postwarden_milter.app import MilterProcess
from postwarden_milter.settings import load_settings
from postwarden_policies.systemd_notify import SystemdNotifier
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import wait_until
from tests.fixtures.processes import children_of, running
from tests.milter.milterclient import MilterClient
from tests.milter.test_process import _env, _run, _serving

REFUSED_EDIT = "version: 1\nname: [\n"
SYS_PIDFD_GETFD = 438  # x86_64 and aarch64 alike


def _refused(spec: str) -> bool:
    try:
        MilterClient(spec, timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _serving_count(log_path: Path) -> int:
    return log_path.read_text().count("starting on")


@contextmanager
def _silent_database() -> Iterator[tuple[str, threading.Event]]:
    """A database URL whose server accepts and never answers (start-up's schema check
    waits out its timeout), and an event set once the milter has connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    connected = threading.Event()

    def accept() -> None:
        with suppress(OSError):
            while True:
                held.append(server.accept()[0])
                connected.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"postgresql://u:p@127.0.0.1:{server.getsockname()[1]}/db", connected
    finally:
        server.close()
        for conn in held:
            conn.close()


def _stop(proc: object) -> None:
    assert hasattr(proc, "send_signal") and hasattr(proc, "wait")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def _tcp_sockets(port: int, state: str, remote_port: int | None = None) -> set[str]:
    """Our TCP sockets bound to ``port`` in ``state`` ("0A" listening, "01"
    established), connected to ``remote_port`` if given, as fd links name them."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(f.rpartition(":")[2], 16) for f in fields[1:3])
        if fields[3] == state and local == port and remote_port in (None, remote):
            found.add(f"socket:[{fields[9]}]")
    return found


def _held_by(pid: int) -> set[str]:
    """What process ``pid``'s descriptors link to (nothing once it is gone)."""
    held = set()
    with suppress(FileNotFoundError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with suppress(OSError):
                held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return held


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket on ``port``."""
    return bool(_tcp_sockets(port, "0A") & _held_by(pid))


def _served_by(client: MilterClient, port: int, pids: set[int]) -> int:
    """Which of ``pids`` holds the milter's end of ``client``'s (negotiated) connection."""
    end = _tcp_sockets(port, "01", client.sock.getsockname()[1])
    [pid] = [pid for pid in pids if end & _held_by(pid)]
    return pid


def _stopping_count(log_path: Path) -> int:
    """Serving processes that began a stop (each says so once it refuses new
    transactions; a parent's "stopping the workers" is not one)."""
    return len(re.findall(r": stopping$", log_path.read_text(), re.MULTILINE))


@pytest.mark.parametrize("processes", [1, 2])
def test_a_stop_waits_for_open_transactions_not_idle_connections(
        tmp_path: Path, processes: int) -> None:
    """Postfix holds a milter connection open for a whole SMTP session: one idle between
    messages must not hold the stop up (it did for message_timeout_seconds, past the
    unit's TimeoutStopSec). A transaction in progress is finished; a new one is
    refused with 421, on a connection old or new, by the process still serving it. The
    parent of workers closes its listening socket at once, and a worker with no
    transaction open stops: none is left in a backlog for nobody."""
    # A stop that waited for the idle connections, kept open to the end, would wait this.
    env = _env(tmp_path, processes=str(processes), message_timeout_seconds="3600")
    spec = env["POSTWARDEN_MILTER_SOCKET"]
    port = int(spec.split(":")[1].split("@")[0])
    log_path = tmp_path / "milter.log"
    with _serving(env, log_path) as proc:
        assert wait_until(lambda: _serving_count(log_path) == processes, timeout=30)
        assert _listens(proc.pid, port)
        servers = children_of(proc.pid) if processes > 1 else {proc.pid}
        # The kernel gives each connection to a worker of its choosing: of two more than
        # there are processes, two share one, which gets a transaction held open and an
        # idle connection; the rest stay open and silent to the end.
        by_server: dict[int, list[MilterClient]] = {}
        with ExitStack() as opened:
            for _ in range(processes + 2):
                client = MilterClient(spec).open()
                opened.callback(client.close)
                by_server.setdefault(_served_by(client, port, servers), []).append(client)
            holder = next(pid for pid, clients in by_server.items() if len(clients) > 1)
            busy, idle = by_server[holder][:2]
            assert idle.message("4QIDLE")[0] == b"c"
            busy.begin("4QBUSY")
            proc.send_signal(signal.SIGTERM)
            assert wait_until(lambda: _stopping_count(log_path) == processes, timeout=10)
            # Left accepting: the holder alone.
            assert wait_until(lambda: not any(_listens(pid, port) for pid in
                                              {proc.pid, *servers} - {holder}), timeout=10)
            for client in (idle, MilterClient(spec, timeout=10).open()):
                late = client.begin("4QLATE")
                client.close()
                assert late is not None and late[0] == b"y", late
                assert late[1].startswith(b"421 4.3.2")
            time.sleep(0.5)
            assert proc.poll() is None  # the open transaction holds the stop
            assert busy.finish("4QBUSY")[0] == b"c"
            busy.close()
            assert proc.wait(timeout=60) == 0, log_path.read_text()
    text = log_path.read_text()
    assert text.count("postwarden milter stopped") == processes + (processes > 1)
    assert "stopping: refusing a new transaction" in text


def test_a_stop_is_logged_once_new_transactions_are_refused(tmp_path: Path) -> None:
    """The stop's log line (what the test above waits for, and an operator reads) holds
    when it is written: a transaction begun by then is refused. It was written first,
    and writing it lets another thread admit a MAIL FROM."""
    settings = load_settings(None, {"POSTWARDEN_POLICY_DIR": str(tmp_path),
                                    "POSTWARDEN_SPOOL_DIR": str(tmp_path)})
    process = MilterProcess(settings, SystemdNotifier(None))
    admitted: list[bool] = []

    class Probe(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "SIGTERM: stopping":
                admitted.append(process.transactions.admit(object()))  # type: ignore[arg-type]

    logger, probe = logging.getLogger("postwarden_milter.app"), Probe()
    level = logger.level
    logger.addHandler(probe)
    logger.setLevel(logging.INFO)
    try:
        process.on_signal(signal.SIGTERM, None)
        process.act_on_signals()
    finally:
        logger.removeHandler(probe)
        logger.setLevel(level)
        process.workers.shutdown()
        process.loop_thread.loop.close()
    assert admitted == [False]


def test_a_replacement_worker_starts_with_the_set_the_others_run(tmp_path: Path) -> None:
    """An edit the workers refused stays on disk: a worker that dies is still replaced
    (reading policy_dir afresh, it exited 2, again and again), with their set."""
    env = _env(tmp_path, processes="2")
    log_path = tmp_path / "milter.log"
    with _serving(env, log_path) as proc:
        assert wait_until(lambda: _serving_count(log_path) == 2, timeout=30)
        [loaded] = set(re.findall(r"policy set (\w+) loaded", log_path.read_text()))
        (tmp_path / "policies" / "main.yaml").write_text(REFUSED_EDIT)
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: log_path.read_text().count("refused, keeping the running set")
                          == 2, timeout=15)
        victim = min(children_of(proc.pid))
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: _serving_count(log_path) == 3, timeout=30), \
            log_path.read_text()
        time.sleep(2)  # a replacement that cannot start would have ended by now
        text = log_path.read_text()
        assert "exit 2" not in text and proc.poll() is None, text
        assert text.count(f"policy set {loaded} loaded") == 3
        assert len(children_of(proc.pid) - {victim}) == 2
        client = MilterClient(env["POSTWARDEN_MILTER_SOCKET"]).open()
        assert client.message("4QAFTER")[0] == b"c"
        client.close()
        _stop(proc)
        assert proc.returncode == 0


def test_with_no_worker_left_to_serve_the_parent_exits_1(tmp_path: Path) -> None:
    """Workers that keep dying: rather than hold a socket nobody answers (Postfix would
    wait on each connection), the parent exits 1 for the service manager to restart."""
    env = _env(tmp_path, processes="2")
    log_path = tmp_path / "milter.log"
    killed: set[int] = set()
    with _serving(env, log_path) as proc:
        assert wait_until(lambda: _serving_count(log_path) == 2, timeout=30)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            for pid in children_of(proc.pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            time.sleep(0.05)
        assert proc.wait(timeout=5) == 1
    assert "no worker process runs" in log_path.read_text()
    assert not any(running(pid) for pid in killed)


def _spools(spool: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in spool.glob("audit-spool*.jsonl")}


def test_a_second_milter_on_a_spool_dir_in_use_is_refused_and_moves_nothing(
        tmp_path: Path) -> None:
    """A second start on the same spool_dir (by hand, with fewer processes) appended the
    spools and journals of the running workers to the first one's before it found
    anything wrong, as if those workers were gone."""
    env = _env(tmp_path, processes="2")  # no database: the spools are the audit log
    spool = tmp_path / "spool"
    log_path = tmp_path / "milter.log"
    with _serving(env, log_path) as first:
        assert wait_until(lambda: _serving_count(log_path) == 2, timeout=30)
        sent = 0
        while sent < 200 and not {"audit-spool.jsonl", "audit-spool-1.jsonl"} <= set(
                _spools(spool)):  # until both workers took a message
            client = MilterClient(env["POSTWARDEN_MILTER_SOCKET"]).open()
            assert client.message(f"4QSPOOL{sent}")[0] == b"c"
            client.close()
            sent += 1
        assert wait_until(  # every message's event written
            lambda: sum(data.count(b"\n") for data in _spools(spool).values()) == sent,
            timeout=30)
        before = _spools(spool)
        assert "audit-spool-1.jsonl" in before
        second = _run([], {**env, "POSTWARDEN_PROCESSES": "1",
                           "POSTWARDEN_MILTER_SOCKET": f"inet:{free_port()}@127.0.0.1"})
        assert second.returncode == 2, second.stderr
        assert f"postwarden-milter: spool_dir {spool}: another milter runs with it" \
            in second.stderr.splitlines()
        assert _spools(spool) == before
        _stop(first)
        assert first.returncode == 0


# A filesystem without locks cannot be mounted here: flock is made to fail as on one.
_NO_LOCKS = """
import errno, fcntl, os, sys
def refuse(fd, operation):
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
fcntl.flock = refuse
from postwarden_milter.cli import main
sys.exit(main([]))
"""


def test_a_spool_dir_that_cannot_be_locked_is_refused_clearly(tmp_path: Path) -> None:
    """On a filesystem without locks (NFS without lockd: ENOLCK), the start ended in a
    traceback (exit 1) instead of saying what is wrong with spool_dir."""
    env = _env(tmp_path)
    ended = subprocess.run([sys.executable, "-c", _NO_LOCKS], env=env, capture_output=True,
                           text=True, timeout=60, check=False)
    assert ended.returncode == 2, ended.stderr
    assert ended.stderr.splitlines() == [
        f"postwarden-milter: spool_dir {tmp_path / 'spool'}: cannot be locked (No locks "
        "available); put it on a local filesystem"]


@pytest.mark.parametrize("processes", [1, 2])
def test_a_second_milter_on_a_served_unix_socket_is_refused(
        tmp_path: Path, processes: int) -> None:
    """libmilter unlinks the socket file before it binds: a second start (by hand, a second
    unit) left the first milter running and unreachable. A stale file still goes."""
    path = tmp_path / "milter.sock"
    env = _env(tmp_path, processes=str(processes), milter_socket=f"unix:{path}")
    spec = env["POSTWARDEN_MILTER_SOCKET"]
    log_path = tmp_path / "milter.log"
    with _serving(env, log_path) as first:
        assert wait_until(lambda: _serving_count(log_path) == processes, timeout=30)
        inode = path.stat().st_ino
        second = _run([], {**env, "POSTWARDEN_SPOOL_DIR": str(tmp_path / "spool2")})
        assert second.returncode == 2, second.stderr
        assert f"postwarden-milter: another milter is listening on {path}" \
            in second.stderr.splitlines()
        assert path.stat().st_ino == inode
        client = MilterClient(spec).open()
        assert client.message("4QFIRST")[0] == b"c"
        client.close()
        first.kill()  # leaves the file behind
        first.wait(10)
    assert wait_until(lambda: _refused(spec), timeout=20)  # workers too are gone
    restarted_log = tmp_path / "restarted.log"
    with _serving(env, restarted_log) as restarted:
        assert wait_until(lambda: _serving_count(restarted_log) == processes, timeout=30), \
            restarted_log.read_text()
        client = MilterClient(spec).open()
        assert client.message("4QAGAIN")[0] == b"c"
        client.close()
        _stop(restarted)
        assert restarted.returncode == 0


@pytest.mark.parametrize("processes", [1, 2])
def test_a_clean_stop_removes_the_unix_socket_file_it_made(
        tmp_path: Path, processes: int) -> None:
    """A stop removes the socket's file, as libmilter's own stop would: the parent of
    workers, which opened it and never ran libmilter's stop, left it behind."""
    path = tmp_path / "milter.sock"
    env = _env(tmp_path, processes=str(processes), milter_socket=f"unix:{path}")
    log_path = tmp_path / "milter.log"
    with _serving(env, log_path) as proc:
        assert wait_until(lambda: _serving_count(log_path) == processes, timeout=30)
        _stop(proc)
        assert proc.returncode == 0, log_path.read_text()
    assert not path.exists()


def test_a_socket_file_another_put_in_place_is_left_to_it(tmp_path: Path) -> None:
    """The parent removes only the file it made: one put in its place since (another
    milter's, started by hand) stays, though this one stops for it (exit 1)."""
    path = tmp_path / "milter.sock"
    env = _env(tmp_path, processes="2", milter_socket=f"unix:{path}")
    log_path = tmp_path / "milter.log"
    with _serving(env, log_path) as proc, socket.socket(socket.AF_UNIX) as other:
        assert wait_until(lambda: _serving_count(log_path) == 2, timeout=30)
        path.unlink()
        other.bind(str(path))
        assert proc.wait(timeout=30) == 1, log_path.read_text()
        assert path.is_socket()


def _listening_socket_of(pid: int, port: int) -> socket.socket:
    """A copy of process ``pid``'s listening socket on ``port`` (pidfd_getfd(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:  # closed meanwhile
                continue
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)
                continue
            sock = socket.socket(fileno=fd)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) and \
                    sock.getsockname()[1] == port:
                return sock
            sock.close()
    finally:
        os.close(pidfd)
    raise AssertionError(f"process {pid} does not listen on {port}")


@pytest.mark.parametrize("processes", [1, 2])
def test_libmilter_failing_once_serving_exits_1_for_a_restart(
        tmp_path: Path, processes: int) -> None:
    """libmilter gives up serving (its listener out of threads, or its socket failing):
    no setting is wrong, so exit 1, which systemd restarts. It exited 2, "milter_socket:
    cannot serve on", the status of invalid settings the unit does not restart: mail
    deferred until an admin came. The socket is made to fail from outside."""
    env = _env(tmp_path, processes=str(processes))
    port = int(env["POSTWARDEN_MILTER_SOCKET"].split(":")[1].split("@")[0])
    log_path = tmp_path / "milter.log"
    with _serving(env, log_path) as proc:
        assert wait_until(lambda: _serving_count(log_path) == processes, timeout=30)
        server = min(children_of(proc.pid)) if processes > 1 else proc.pid
        with _listening_socket_of(server, port) as listening:
            listening.shutdown(socket.SHUT_RDWR)  # shared: every worker's fails
        assert proc.wait(timeout=60) == 1, log_path.read_text()
    text = log_path.read_text()
    assert "libmilter stopped serving: " in text
    assert "cannot serve on" not in text


@pytest.mark.parametrize("processes", [1, 2])
def test_a_reload_asked_for_while_starting_is_done_once_serving(
        tmp_path: Path, processes: int) -> None:
    """SIGHUP (systemctl reload) during a slow start (a database that does not answer,
    which start-up waits out) killed the milter: the handlers came only after."""
    with _silent_database() as (database_url, connected):
        env = _env(tmp_path, processes=str(processes), database_url=database_url)
        log_path = tmp_path / "milter.log"
        with _serving(env, log_path) as proc:
            assert connected.wait(timeout=30)  # in the schema check
            proc.send_signal(signal.SIGHUP)
            # Each process logs its reload (reload thread) and that it serves (main
            # thread) in either order.
            assert wait_until(lambda: log_path.read_text().count("policy set reloaded (signal)")
                              == processes == _serving_count(log_path), timeout=60), \
                log_path.read_text()
            assert proc.poll() is None
            _stop(proc)
            assert proc.returncode == 0, log_path.read_text()


def _writer(fifo: Path, proc: subprocess.Popen[bytes]) -> int | None:
    """The write end of ``fifo`` once the milter opened it to read (None: it exited)."""
    while proc.poll() is None:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            time.sleep(0.01)
    return None


@pytest.mark.parametrize("processes", [1, 2])
def test_a_reload_asked_for_as_the_settings_are_read_is_done_once_serving(
        tmp_path: Path, processes: int) -> None:
    """SIGHUP in the milter's first fraction of a second (its imports, its settings
    file), before its handlers were in place, took the default action: the milter was
    killed. The settings file is a FIFO, so the signal comes while it is read."""
    fifo = tmp_path / "postwarden.yaml"
    os.mkfifo(fifo)
    env = _env(tmp_path, config=str(fifo))
    log_path = tmp_path / "milter.log"
    with _serving(env, log_path) as proc:
        writer = _writer(fifo, proc)
        assert writer is not None, log_path.read_text()
        proc.send_signal(signal.SIGHUP)
        with os.fdopen(writer, "w") as settings:
            settings.write(f"processes: {processes}\n")
        assert wait_until(lambda: log_path.read_text().count("policy set reloaded (signal)")
                          == processes == _serving_count(log_path) or proc.poll() is not None,
                          timeout=60), log_path.read_text()
        assert proc.poll() is None, f"exit {proc.returncode}: {log_path.read_text()}"
        _stop(proc)
        assert proc.returncode == 0, log_path.read_text()
