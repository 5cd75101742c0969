"""What the milter process tells systemd (Type=notify, NotifyAccess=main): READY=1 once
its socket accepts connections, RELOADING=1 then READY=1 around a SIGHUP reload,
STOPPING=1 as a stop begins; always from its main process, never from a worker."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.fixtures.notify import Notice, NotifySocket
from tests.milter.milterclient import MilterClient
from tests.milter.test_lifecycle import _silent_database
from tests.milter.test_process import POLICY, _env, _serving

LOADED = re.compile(r"policy set \w+ loaded")


@pytest.mark.parametrize("processes", [1, 2])
def test_ready_once_the_socket_accepts_connections(tmp_path: Path, processes: int) -> None:
    with NotifySocket(str(tmp_path / "notify")) as systemd:
        env = _env(tmp_path, processes=str(processes)) | {"NOTIFY_SOCKET": systemd.address}
        log_path = tmp_path / "milter.log"
        with _serving(env, log_path) as proc:
            ready = systemd.receive()
            MilterClient(env["POSTWARDEN_MILTER_SOCKET"], timeout=5).close()  # at once
            assert ready == Notice("READY=1", proc.pid), log_path.read_text()
            # Every process that serves has loaded its policy set (a worker tells
            # the parent only once it serves).
            assert len(LOADED.findall(log_path.read_text())) == processes


@pytest.mark.parametrize("processes", [1, 2])
def test_reloads_and_the_stop_are_announced(tmp_path: Path, processes: int) -> None:
    policy = tmp_path / "policies" / "main.yaml"
    with NotifySocket(str(tmp_path / "notify")) as systemd:
        env = _env(tmp_path, processes=str(processes)) | {"NOTIFY_SOCKET": systemd.address}
        log_path = tmp_path / "milter.log"
        with _serving(env, log_path) as proc:
            assert systemd.receive() == Notice("READY=1", proc.pid)
            for edit, done in [(POLICY.format(limit=6), "policy set reloaded (signal)"),
                               ("version: 1\nname: [\n", "policy reload (signal) refused")]:
                policy.write_text(edit)
                proc.send_signal(signal.SIGHUP)
                assert systemd.receive() == Notice("RELOADING=1", proc.pid)
                assert systemd.receive() == Notice("READY=1", proc.pid)
                # READY=1 comes after every process has reloaded (or refused the edit).
                assert log_path.read_text().count(done) == processes
            proc.send_signal(signal.SIGTERM)
            assert systemd.receive() == Notice("STOPPING=1", proc.pid)
            assert proc.wait(timeout=30) == 0
        assert not systemd.pending()  # nothing more, from any process


@pytest.mark.parametrize("processes", [1, 2])
def test_a_reload_asked_for_while_starting_is_not_announced(tmp_path: Path, processes: int
                                                            ) -> None:
    """systemd would take the READY=1 that ends such a reload for start-up's, with the
    socket not open yet: start-up's READY=1 comes first, and alone."""
    with NotifySocket(str(tmp_path / "notify")) as systemd, \
            _silent_database() as (database_url, connected):
        env = _env(tmp_path, processes=str(processes), database_url=database_url)
        env["NOTIFY_SOCKET"] = systemd.address
        log_path = tmp_path / "milter.log"
        with _serving(env, log_path) as proc:
            assert connected.wait(timeout=30)  # in the schema check
            proc.send_signal(signal.SIGHUP)
            ready = systemd.receive()
            MilterClient(env["POSTWARDEN_MILTER_SOCKET"], timeout=5).close()  # at once
            assert ready == Notice("READY=1", proc.pid), log_path.read_text()
            proc.send_signal(signal.SIGTERM)
            assert systemd.receive() == Notice("STOPPING=1", proc.pid)
            assert proc.wait(timeout=30) == 0
        assert log_path.read_text().count("policy set reloaded (signal)") == processes
        assert not systemd.pending()
