"""TCP_NODELAY on libmilter's listening socket reaches every accepted connection;
the socket specs the milter tunes."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from postwarden_milter.listener import (
    disable_nagle,
    disown_listener,
    hang_up,
    inet_port,
    never_block_accept,
    remove_socket_file,
    socket_file,
    socket_file_lost,
    unix_path,
)
from tests.fixtures.milterproc import MilterProcess

POLICIES = Path(__file__).resolve().parents[2] / "policies" / "examples"


@pytest.mark.parametrize(
    ("spec", "port"),
    [
        pytest.param("inet:8899@127.0.0.1", 8899, id="inet"),
        pytest.param("inet6:8899@[::1]", 8899, id="inet6"),
        pytest.param("unix:/run/postwarden/milter.sock", None, id="unix"),
        pytest.param("inet:notaport@127.0.0.1", None, id="bad-port"),
    ],
)
def test_inet_port(spec: str, port: int | None) -> None:
    assert inet_port(spec) == port


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        pytest.param("unix:/run/postwarden/milter.sock", "/run/postwarden/milter.sock", id="unix"),
        pytest.param("local:/run/milter.sock", "/run/milter.sock", id="local"),
        pytest.param("inet:8899@127.0.0.1", None, id="inet"),
    ],
)
def test_unix_path(spec: str, path: str | None) -> None:
    assert unix_path(spec) == path


def test_listener_and_accepted_connections_get_nodelay() -> None:
    with socket.socket() as listener, socket.socket() as other:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        other.bind(("127.0.0.1", 0))
        other.listen()
        assert disable_nagle(listener.getsockname()[1]) == 1
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert not other.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # other port
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert listener.fileno() >= 0  # our descriptor was not closed by the scan


def test_no_listener_found_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening
        assert disable_nagle(sock.getsockname()[1]) == 0
    assert "Nagle's algorithm stays on" in caplog.text


def test_a_shared_listener_never_blocks_in_accept(tmp_path: Path) -> None:
    with socket.socket() as listener, socket.socket() as other, \
            socket.socket(socket.AF_UNIX) as unix:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        other.bind(("127.0.0.1", 0))
        other.listen()
        unix.bind(str(tmp_path / "milter.sock"))
        unix.listen()
        assert never_block_accept(f"inet:{listener.getsockname()[1]}@127.0.0.1") == 1
        assert never_block_accept(f"unix:{tmp_path / 'milter.sock'}") == 1
        # The descriptors' flag (these objects' own timeouts are not what libmilter sees).
        assert not os.get_blocking(listener.fileno()) and not os.get_blocking(unix.fileno())
        assert os.get_blocking(other.fileno())  # another port
        with pytest.raises(BlockingIOError):  # what libmilter takes as "poll again"
            listener.accept()
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert os.get_blocking(accepted.fileno())  # sessions stay blocking
    with pytest.raises(OSError, match="no listening socket"):
        never_block_accept(f"unix:{tmp_path / 'gone.sock'}")


def test_a_stopping_worker_lets_go_of_the_shared_socket(tmp_path: Path) -> None:
    """libmilter unlinks a unix socket's file at stop when its descriptor is that socket:
    a worker stopping alone must leave the file to the others."""
    path = tmp_path / "milter.sock"
    with socket.socket(socket.AF_UNIX) as unix, socket.socket() as tcp:
        unix.bind(str(path))
        unix.listen()
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        assert disown_listener(f"unix:{path}") == 1
        assert stat.S_ISCHR(os.fstat(unix.fileno()).st_mode)  # /dev/null, not the socket
        assert stat.S_ISSOCK(os.fstat(tcp.fileno()).st_mode)  # another listener, untouched
        assert stat.S_ISSOCK(path.stat().st_mode)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_UNIX])
def test_a_stop_hangs_up_the_accepted_connections_only(tmp_path: Path, family: int) -> None:
    """The connections accepted on the milter's socket, and nothing else: not the
    listener, not a connection of ours elsewhere (the database's)."""
    address: str | tuple[str, int] = (str(tmp_path / "milter.sock") if family == socket.AF_UNIX
                                      else ("127.0.0.1", 0))
    with socket.socket(family) as listener, socket.socket() as elsewhere:
        listener.bind(address)
        listener.listen()
        bound = listener.getsockname()
        spec = f"unix:{bound}" if family == socket.AF_UNIX else f"inet:{bound[1]}@127.0.0.1"
        elsewhere.bind(("127.0.0.1", 0))
        elsewhere.listen()
        with socket.socket(family) as mta, socket.create_connection(
                elsewhere.getsockname()) as ours:
            mta.connect(bound)
            accepted, _ = listener.accept()
            theirs, _ = elsewhere.accept()
            with accepted, theirs:
                assert hang_up(spec) == 1
                mta.settimeout(10)
                assert mta.recv(1) == b""  # the MTA sees the connection closed
                assert accepted.fileno() >= 0  # the descriptor stays, libmilter's to close
                ours.sendall(b".")
                assert theirs.recv(1) == b"."
            assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)


def test_a_stopping_milter_removes_only_the_socket_file_it_made(tmp_path: Path) -> None:
    path = tmp_path / "milter.sock"
    spec = f"unix:{path}"
    with socket.socket(socket.AF_UNIX) as ours:
        ours.bind(str(path))
        made = socket_file(spec)
        path.unlink()  # another milter's since (a second start replaced it)
        with socket.socket(socket.AF_UNIX) as theirs:
            theirs.bind(str(path))
            remove_socket_file(spec, made)
            assert path.exists()
            remove_socket_file(spec, socket_file(spec))
            assert not path.exists()
    remove_socket_file("inet:8899@127.0.0.1", None)  # TCP: no file


def test_a_socket_file_that_cannot_be_looked_at_is_not_taken_for_lost(tmp_path: Path) -> None:
    """A path the milter may no longer search (its directory's mode changed: EACCES;
    ENOTDIR here, as root searches any directory) raised in the watch, which stopped the
    milter with a traceback though Postfix may still reach it. One gone is lost."""
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert not socket_file_lost(f"unix:{blocked}/milter.sock", (1, 2))
    remove_socket_file(f"unix:{blocked}/milter.sock", (1, 2))  # nor does a stop raise
    assert socket_file_lost(f"unix:{tmp_path}/milter.sock", (1, 2))
    assert not socket_file_lost("inet:8899@127.0.0.1", None)


def test_unix_socket_gets_the_configured_mode() -> None:
    """libmilter creates the socket with the process umask; the milter then sets the mode
    (MilterProcess.start waits for it, so a missing chmod fails here as a timeout)."""
    milter = MilterProcess(POLICIES, unix_socket=True,
                           env={"POSTWARDEN_MILTER_SOCKET_MODE": "0640"})
    try:
        milter.start(timeout=20)
        assert milter.socket_path is not None
        mode = milter.socket_path.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o640
    finally:
        milter.destroy()
