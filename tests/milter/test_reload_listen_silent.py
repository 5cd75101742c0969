"""The policy LISTEN connection to a server that went away without a word.

A failover that moves the database's address, or a firewall that forgets the
flow, leaves the connection open on our side with no one behind it: nothing
ever says it closed, so without asking it to answer the milter would miss every
policy activation after it until restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from postwarden_milter import reload as reload_module
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from tests.fixtures.postgres import wait_until
from tests.milter.test_reload import POLICY, _activate, _listens, _reloader

pytestmark = pytest.mark.postgres


class SilencingRelay:
    """A loopback TCP relay to ``port``: :meth:`silence` makes the sessions open then drop
    what either end sends, their sockets kept open (to each end, a peer gone without a
    word); sessions opened later are relayed."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._silenced: list[threading.Event] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed
            while True:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self._target))
                silenced = threading.Event()
                self._sockets += [client, upstream]
                self._silenced.append(silenced)
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(source, sink, silenced),
                                     daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, silenced: threading.Event) -> None:
        with contextlib.suppress(OSError):  # a socket closed
            while data := source.recv(65536):
                if not silenced.is_set():
                    sink.sendall(data)
            if not silenced.is_set():
                sink.shutdown(socket.SHUT_WR)  # the end of the stream, passed on

    def silence(self) -> None:
        for silenced in self._silenced:
            silenced.set()

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            sock.close()


@contextlib.contextmanager
def _relayed(dsn: str) -> Iterator[tuple[str, SilencingRelay]]:
    parts = urlsplit(dsn)
    assert parts.port is not None
    relay = SilencingRelay(parts.port)
    try:
        yield parts._replace(netloc=f"{parts.username}@127.0.0.1:{relay.port}").geturl(), relay
    finally:
        relay.close()


def test_a_listen_connection_that_stops_answering_is_replaced_and_the_set_reloaded(
    database_url: str, tmp_path: Path, loop_thread: LoopThread,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(reload_module, "LISTEN_PING_SECONDS", 0.3)
    monkeypatch.setattr(reload_module, "DB_TIMEOUT", 1.0)
    monkeypatch.setattr(reload_module, "LISTEN_RETRY", 0.1)
    caplog.set_level(logging.DEBUG, logger="postwarden_milter.reload")
    asyncio.run(_activate(database_url, "main", POLICY.format(name="main", limit=2)))
    with _relayed(database_url) as (relayed_url, relay):
        metrics = Metrics()
        reloader = _reloader(metrics, loop_thread, tmp_path, database_url=relayed_url)
        holder = reloader.load_initial()
        reloader.start()
        try:
            assert wait_until(lambda: _listens(caplog), timeout=10)
            relay.silence()
            # its NOTIFY goes to the silent connection
            asyncio.run(_activate(database_url, "main", POLICY.format(name="main", limit=9)))
            assert wait_until(lambda: holder.current.limits.max_recipients == 9, timeout=15)
        finally:
            reloader.stop()
    assert "the policy LISTEN connection does not answer: reconnecting" in caplog.text
