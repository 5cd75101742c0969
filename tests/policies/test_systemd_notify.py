"""The sd_notify protocol both services speak, against a real datagram socket."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest

from postwarden_policies.systemd_notify import SystemdNotifier
from tests.fixtures.notify import Notice, NotifySocket


def test_each_state_is_one_datagram_on_the_socket_named(tmp_path: Path) -> None:
    with NotifySocket(str(tmp_path / "notify")) as systemd:
        notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": systemd.address})
        notifier.ready()
        notifier.reloading()
        notifier.stopping()
        assert [systemd.receive(timeout=5) for _ in range(3)] == [
            Notice("READY=1", os.getpid()), Notice("RELOADING=1", os.getpid()),
            Notice("STOPPING=1", os.getpid())]


def test_an_abstract_socket_is_named_with_an_at_sign() -> None:
    with NotifySocket(f"@postwarden-test-{uuid.uuid4().hex}") as systemd:
        SystemdNotifier.from_environment({"NOTIFY_SOCKET": systemd.address}).ready()
        assert systemd.receive(timeout=5) == Notice("READY=1", os.getpid())


def test_the_variable_is_taken_out_of_the_environment(tmp_path: Path) -> None:
    """What the service starts or forks later cannot speak for it."""
    environ = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "PATH": "/usr/bin"}
    SystemdNotifier.from_environment(environ)
    assert environ == {"PATH": "/usr/bin"}


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}], ids=["unset", "empty"])
def test_without_a_socket_nothing_is_sent_or_logged(
        environ: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier.from_environment(environ)
    with caplog.at_level(logging.DEBUG):
        notifier.ready()
        notifier.stopping()
    assert caplog.records == []


def test_a_failed_send_is_logged_once_and_never_raised(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier(str(tmp_path / "nobody-listens"))
    with caplog.at_level(logging.WARNING):
        notifier.ready()
        notifier.reloading()
        notifier.ready()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"cannot notify the service manager on {tmp_path / 'nobody-listens'} "
                    "(No such file or directory); further failures are not logged")]
