"""A message that sanitizing makes larger than the limits, through the real Postfix and
milter: refused by the milter's policy, with an audit row that says so, not by Postfix's
cleanup after the milter audited it as delivered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.postfix import send_message

from .conftest import MailSystem, mail_system_for
from .messages import RECIPIENT, SENDER

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

LIMIT = 60_000
PADDING = "\n".join(f"        X-Pad-{n}: {'p' * 890}" for n in range(12))  # 11 KB of lines
POLICY = f"""\
version: 1
name: size
limits:
  max_message_bytes: {LIMIT}
sanitize:
  html: true
rules:
  - name: pad
    when: {{subject: "^pad$"}}
    then:
      add_header:
{PADDING}
"""


@pytest.fixture(scope="module")
def system(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSystem]:
    policy_dir = tmp_path_factory.mktemp("policies")
    (policy_dir / "size.yaml").write_text(POLICY)
    with mail_system_for(database_url, policy_dir=Path(policy_dir),
                         main={"message_size_limit": str(LIMIT)}) as mail_system:
        yield mail_system


def test_html_sanitizing_makes_too_big_is_refused_by_policy(system: MailSystem) -> None:
    # nh3 (the comment sends the part there) writes each ">" in text as "&gt;":
    # 24 KB of them come out near 60 KB.
    message_id = "<grown-by-sanitizing@example.org>"
    data = (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: {message_id}\r\nSubject: links\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
    ).encode() + b"<!-- -->" + b"> " * 12000 + b"\r\n"
    assert len(data) < LIMIT // 1.5

    result = send_message(system.postfix.port, data, SENDER, [RECIPIENT])
    assert (result.code, result.text) == (552, "5.3.4 Message size exceeds fixed limit"), result
    row = system.audit_row(message_id)
    assert row["action"] == "reject"
    assert "limit:max_message_bytes" in row["rules"]


def test_header_edits_that_make_a_message_too_big_are_refused_by_policy(
    system: MailSystem,
) -> None:
    # Postfix's cleanup refused it ("message file too big") after the audit row said
    # accept: the limit counts the lines the rule adds, as it counts what sanitizing adds.
    message_id = "<grown-by-headers@example.org>"
    head = (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: {message_id}\r\nSubject: pad\r\n\r\n"
    ).encode()
    data = head + (b"x" * 76 + b"\r\n") * ((LIMIT - 3000 - len(head)) // 78)
    assert len(data) < LIMIT - 2000

    result = send_message(system.postfix.port, data, SENDER, [RECIPIENT])
    assert (result.code, result.text) == (552, "5.3.4 Message size exceeds fixed limit"), result
    row = system.audit_row(message_id)
    assert row["action"] == "reject"
    assert row["rules"] == ["pad", "limit:max_message_bytes"]
