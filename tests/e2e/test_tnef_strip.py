"""A file stripped from inside a winmail.dat, through the real Postfix and milter: the
message is delivered, its TNEF lists the other files as sent and a notice in place
of the stripped one, and the audit row records the file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from postwarden_policies import Envelope, parse_message
from postwarden_policies.tnef import Reader
from postwarden_policies.tnefrewrite import NOTICE_NAME
from postwarden_policies.transfer import decode
from tests.fixtures.postfix import has_header, send_message
from tests.policies.test_tnef import NOTE, _attachment, _stream, _unicode

from . import messages
from .conftest import MailSystem, mail_system_for
from .messages import RECIPIENT, SENDER

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

POLICY = """\
version: 1
name: tnef
rules:
  - name: strip-macro-documents
    when:
      attachment:
        filename: ["*.docm"]
    then: strip_attachment
"""
MACRO = b"PK\x03\x04" + bytes(range(256)) * 4


@pytest.fixture(scope="module")
def system(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSystem]:
    policy_dir = tmp_path_factory.mktemp("policies")
    (policy_dir / "tnef.yaml").write_text(POLICY)
    with mail_system_for(database_url, policy_dir=Path(policy_dir)) as mail_system:
        yield mail_system


def _tnef_files(data: bytes) -> list[tuple[list[str], bytes]]:
    """The files of the message's winmail.dat: names and bytes."""
    facts = parse_message(data, Envelope())
    carrier = next(p for p in facts.parts if p.filename == "winmail.dat")
    stream = decode(data[carrier.body_start : carrier.body_end], carrier.transfer_encoding)
    listing = Reader().read(memoryview(stream), 10)
    assert listing.readable
    return [(a.names, bytes(a.data)) for a in listing.attachments]


def test_a_macro_document_is_stripped_from_winmail_dat(system: MailSystem) -> None:
    report = _attachment("report.pdf", b"%PDF-1.7\n")
    macro = _attachment("INVOIC~1.DOC", MACRO, _unicode(0x3707, "invoice.docm"))
    sample = messages.with_attachment(
        "winmail.dat", _stream(NOTE, macro, report), "application/ms-tnef"
    )
    result = send_message(system.postfix.port, sample.data, SENDER, [RECIPIENT])
    assert result.accepted, result
    delivered = system.capture.wait_for_message(has_header("Message-ID", sample.message_id))

    sent, got = _tnef_files(sample.data), _tnef_files(delivered.data)
    assert [got[0], got[2]] == [sent[0], sent[2]]
    assert got[1][0] == [NOTICE_NAME, NOTICE_NAME]
    assert hashlib.sha256(MACRO).hexdigest().encode() in got[1][1]

    row = system.audit_row(sample.message_id)
    assert row["action"] == "accept"
    changes = row["changes"]
    stripped = [c for c in (json.loads(changes) if isinstance(changes, str) else changes)
                if c["kind"] == "attachment_stripped"]
    assert [(c["part"], c["filename"], c["size"], c["sha256"]) for c in stripped] == [
        ("2.2", "INVOIC~1.DOC", len(MACRO), hashlib.sha256(MACRO).hexdigest())
    ]
