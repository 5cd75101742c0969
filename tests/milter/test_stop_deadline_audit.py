"""A transaction still open when a stop's deadline (message_timeout_seconds) passes is
cut by the hang-up, with no abort callback to audit it: the stop writes its aborted
row itself, flagged stop_deadline, and logs it apart from the idle connections it
closes. No database: the spool is the audit log."""

from __future__ import annotations

import concurrent.futures
import json
import re
import threading
from contextlib import closing
from pathlib import Path

import pytest

from postwarden_milter.duplicates import DuplicateDetector
from tests.fixtures.milterproc import running_milter
from tests.milter.conftest import Harness
from tests.milter.milterclient import MilterClient

WAIT = 10.0  # bounds every wait for the other thread


def _counted(log: str, pattern: str) -> int:
    """The numbers logged by the lines matching ``pattern`` (one line per worker), summed."""
    return sum(int(found) for found in re.findall(pattern, log))


@pytest.mark.parametrize("processes", [1, 2])
def test_a_transaction_cut_by_the_stop_deadline_has_its_aborted_row(
        tmp_path: Path, processes: int) -> None:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "main.yaml").write_text("version: 1\nname: main\n")
    env = {"POSTWARDEN_PROCESSES": str(processes), "POSTWARDEN_MESSAGE_TIMEOUT_SECONDS": "2"}
    with running_milter(policy_dir, env=env) as milter:
        spec = milter.env["POSTWARDEN_MILTER_SOCKET"]
        done, busy = MilterClient(spec).open(), MilterClient(spec).open()
        with closing(done.sock), closing(busy.sock):
            assert done.message("4QDONE")[0] == b"c"  # then idle
            # Up to its headers (end of headers answered: all were taken); no body, no eom.
            assert busy.begin("4QCUT") == (b"c", b"")
            milter.terminate()
            assert milter.wait(timeout=30) == 0, milter.log()
            assert busy.sock.recv(1) == b""  # hung up
        rows = {row["queue_id"]: row for path in milter.spool_files()
                for row in map(json.loads, path.read_text().splitlines())}
        log = milter.log()
    assert rows["4QDONE"]["action"] == "accept"
    cut = rows["4QCUT"]
    assert (cut["action"], cut["smtp_reply"]) == ("aborted", None)
    assert "stop_deadline" in cut["flags"]
    assert (cut["sender"], cut["recipients"]) == ("alice@example.org", ["bob@example.net"])
    assert cut["message_id"] == "<4QCUT@example.org>"  # the headers it had received
    assert _counted(log, r"(\d+) open transactions cut, audited as aborted") == 1, log
    assert _counted(log, r"closed (\d+) idle connections") == 1, log


class Gate(DuplicateDetector):
    """Holds eom while its verdict is worked out (the look-up of its duplicate key)."""

    def __init__(self) -> None:
        super().__init__(600)
        self.reached = threading.Event()
        self.opened = threading.Event()
        self.recorded: list[bytes] = []

    def seen(self, key: bytes) -> bool:
        self.reached.set()
        assert self.opened.wait(WAIT)
        return super().seen(key)

    def record(self, *keys: bytes) -> None:
        self.recorded.extend(keys)
        super().record(*keys)


def test_an_eom_running_at_the_deadline_leaves_the_cut_row_alone(harness: Harness) -> None:
    """The stop's deadline cuts a transaction whose eom is still deciding: one row,
    aborted and flagged, and the message is not recorded as delivered (the MTA gets
    milter_default_action when the connection is hung up, whatever eom returns)."""
    gate = Gate()
    harness.use(duplicates=gate)
    ctx = harness.connect(queue_id="4QEOM")
    message = (b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hi\r\n"
               b"Message-ID: <eom-cut@example.org>\r\n\r\nHello.\r\n")
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as mta:
        sent = mta.submit(ctx.send, message)
        try:
            assert gate.reached.wait(WAIT)
            assert harness.services.transactions.cut() == 1
        finally:
            gate.opened.set()
        sent.result(WAIT)
    [event] = harness.audit.events
    assert (event.action, event.queue_id, event.message_id) == (
        "aborted", "4QEOM", "<eom-cut@example.org>")
    assert "stop_deadline" in event.flags
    assert gate.recorded == []
    assert harness.services.transactions.active == 0
    assert harness.services.transactions.cut() == 0  # nothing left to cut
