"""body_memory_threshold through a real Postfix: a body past it goes to a temporary file
(counted in postwarden_bodies_spilled_total), one within it stays in memory, and the
message arrives byte for byte as sent either way."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_milter.metrics_merge import Series
from tests.fixtures.milterproc import running_milter
from tests.fixtures.ports import free_port
from tests.fixtures.postfix import has_header, running_postfix, send_message
from tests.fixtures.scrape import scrape

pytestmark = [pytest.mark.postfix]

SENDER, RECIPIENT = "alice@example.org", "bob@example.net"
THRESHOLD = 64 * 1024
SPILLED: Series = ("postwarden_bodies_spilled_total", frozenset())


def _message(message_id: str, body_bytes: int) -> bytes:
    line = b"".join(bytes([33 + (i % 94)]) for i in range(76)) + b"\r\n"  # printable ASCII
    head = (f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: threshold\r\n"
            f"Date: Sat, 05 Dec 2026 01:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n\r\n"
            ).encode()
    return head + line * (body_bytes // len(line))


def test_a_body_past_the_threshold_is_spilled_and_arrives_unchanged(tmp_path: Path) -> None:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "main.yaml").write_text("version: 1\nname: main\n")
    metrics_port = free_port()
    env = {"POSTWARDEN_BODY_MEMORY_THRESHOLD": str(THRESHOLD),
           "POSTWARDEN_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
           "POSTWARDEN_ID_HEADER": ""}  # nothing added: what arrives is what was sent
    with (running_milter(policy_dir, env=env) as milter,
          running_postfix(milter=milter.postfix_spec) as (postfix, capture)):
        spilled = []
        for name, size in (("within", THRESHOLD // 2), ("past", THRESHOLD * 4)):
            sent = _message(f"{name}@example.org", size)
            result = send_message(postfix.port, sent, SENDER, [RECIPIENT])
            assert result.accepted, result
            got = capture.wait_for_message(has_header("Message-ID", f"<{name}@example.org>"))
            # Postfix prepends its Received field (folded); the rest is the message as sent.
            assert got.data.endswith(sent)
            received = got.data[:-len(sent)].split(b"\r\n")
            assert received[0].startswith(b"Received: ") and received[-1] == b""
            assert all(line[:1] in (b" ", b"\t") for line in received[1:-1]), received
            spilled.append(scrape(metrics_port)[SPILLED])
        assert spilled == [0, 1], milter.log()
