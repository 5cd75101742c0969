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
    inet_port,
    never_block_accept,
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
