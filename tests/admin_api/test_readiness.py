"""What `postwarden-admin serve` tells systemd (Type=notify): READY=1 once it listens,
STOPPING=1 as a stop begins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.admin_api.test_httpserver import _answers
from tests.fixtures.adminapp import TEST_SECRET_KEY
from tests.fixtures.notify import Notice, NotifySocket
from tests.fixtures.ports import free_port


@pytest.mark.postgres
def test_ready_once_listening_and_stopping_on_sigterm(database_url: str, tmp_path: Path
                                                      ) -> None:
    port = free_port()
    with NotifySocket(str(tmp_path / "notify")) as systemd, \
            (tmp_path / "stderr").open("w") as stderr:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
        env |= {"POSTWARDEN_DATABASE_URL": database_url, "POSTWARDEN_LISTEN": f"127.0.0.1:{port}",
                "POSTWARDEN_SECRET_KEY": TEST_SECRET_KEY, "NOTIFY_SOCKET": systemd.address}
        proc = subprocess.Popen([sys.executable, "-m", "postwarden_admin_api", "serve"],
                                env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            ready = systemd.receive()
            assert _answers(port)  # at once
            assert ready == Notice("READY=1", proc.pid)
            proc.send_signal(signal.SIGTERM)
            assert systemd.receive() == Notice("STOPPING=1", proc.pid)
            assert proc.wait(timeout=30) == 0, (tmp_path / "stderr").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert not systemd.pending()
