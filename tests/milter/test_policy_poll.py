"""policy_poll_seconds: an edit of policy_dir is loaded by the poll, once it has settled;
with 0 it is not polled for at all, only loaded on SIGHUP."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.fixtures.postgres import wait_until
from tests.milter.milterclient import MilterClient
from tests.milter.test_process import POLICY, _env, _serving

# MilterClient's messages have the subject "hello".
REJECTING = POLICY.format(limit=5) + """\
rules:
  - name: no-hello
    when:
      subject: "(?i)hello"
    then: reject
"""


def _verdict(env: dict[str, str], queue_id: str) -> bytes:
    """The milter's answer at end of message: b"c" lets it through."""
    client = MilterClient(env["POSTWARDEN_MILTER_SOCKET"]).open()
    try:
        return client.message(queue_id)[0]
    finally:
        client.close()


def test_an_edit_is_polled_in_and_not_with_polling_off(tmp_path: Path) -> None:
    """Two milters on one policy_dir, polling every 0.1 s and not at all: once the first
    has loaded the edit (its polls saw it settle), the second still runs the set it
    started with, until SIGHUP."""
    for name in ("polled", "off"):
        (tmp_path / name).mkdir()
    polled = _env(tmp_path / "polled", policy_poll_seconds="0.1")
    off = {**_env(tmp_path / "off", policy_poll_seconds="0"),
           "POSTWARDEN_POLICY_DIR": polled["POSTWARDEN_POLICY_DIR"]}
    polled_log, off_log = tmp_path / "polled.log", tmp_path / "off.log"
    with _serving(polled, polled_log) as polled_proc, _serving(off, off_log) as off_proc:
        for log in (polled_log, off_log):
            assert wait_until(lambda log=log: "starting on" in log.read_text(), timeout=30)
        assert _verdict(polled, "4QPOLL1") == _verdict(off, "4QOFF1") == b"c"
        (Path(polled["POSTWARDEN_POLICY_DIR"]) / "main.yaml").write_text(REJECTING)
        assert wait_until(lambda: "policy set reloaded (file change)" in polled_log.read_text(),
                          timeout=20), polled_log.read_text()
        assert _verdict(polled, "4QPOLL2") != b"c"
        assert _verdict(off, "4QOFF2") == b"c"
        assert "reloaded" not in off_log.read_text()
        off_proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "policy set reloaded (signal)" in off_log.read_text(),
                          timeout=20), off_log.read_text()
        assert _verdict(off, "4QOFF3") != b"c"
        for proc in (polled_proc, off_proc):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    assert "file change" not in off_log.read_text()
