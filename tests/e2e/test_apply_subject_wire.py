"""A prefixed Subject as Postfix delivers it, through the real milter: it keeps the
folding it came with, no line passes 998 octets, and raw 8-bit bytes that are not
UTF-8 (a Latin-1 Subject) arrive as they were sent, inside an RFC 2047 encoded word
(pymilter sends header values as UTF-8 text only)."""

from __future__ import annotations

import email.header
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.postfix import has_header, send_message

from . import messages
from .conftest import MailSystem, mail_system_for
from .messages import RECIPIENT, SENDER, Delivered

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

POLICY = """\
version: 1
name: wire
rules:
  - name: tag
    when:
      subject: '\\[tag-me\\]'
    then:
      subject_prefix: "[EXT] "
"""
PLACEHOLDER = b"subject-placeholder"


@pytest.fixture(scope="module")
def system(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSystem]:
    policy_dir = tmp_path_factory.mktemp("policies")
    (policy_dir / "wire.yaml").write_text(POLICY)
    with mail_system_for(database_url, policy_dir=Path(policy_dir)) as mail_system:
        yield mail_system


def _delivered_subject(system: MailSystem, subject: bytes) -> bytes:
    """The one Subject field Postfix delivered for a message sent with ``subject`` (raw
    bytes, folded as given), with its line ends."""
    sample = messages.clean(PLACEHOLDER.decode())
    data = sample.data.replace(PLACEHOLDER, subject)
    result = send_message(system.postfix.port, data, SENDER, [RECIPIENT])
    assert result.accepted, result
    delivered = Delivered.parse(
        system.capture.wait_for_message(has_header("Message-ID", sample.message_id)).data)
    subjects = [field for field, name in zip(delivered.fields, delivered.names(), strict=True)
                if name == "subject"]
    assert len(subjects) == 1, subjects
    return subjects[0]


def _words(count: int) -> bytes:
    return b" ".join(b"word%03d" % n for n in range(count))


def test_a_folded_subject_keeps_its_folding(system: MailSystem) -> None:
    folded = b"[tag-me] quarterly figures\r\n for the northern region\r\n\tand the rest"
    assert _delivered_subject(system, folded) == b"Subject: [EXT] " + folded + b"\r\n"


def test_a_folded_subject_past_998_octets_keeps_its_lines(system: MailSystem) -> None:
    # Folded as sent, in lines of 9 words; 1,600 octets unfolded.
    words = [b"[tag-me]", *_words(200).split(b" ")]
    folded = b"".join((b"\r\n " if n % 9 == 8 else b" ") + word for n, word in enumerate(words))
    field = _delivered_subject(system, folded.lstrip())
    assert field == b"Subject: [EXT] " + folded.lstrip() + b"\r\n"


def test_an_unfolded_subject_past_998_octets_gets_folded(system: MailSystem) -> None:
    one_line = b"[tag-me] " + _words(150)
    field = _delivered_subject(system, one_line)
    lines = field.split(b"\r\n")[:-1]
    assert len(lines) > 1 and max(len(line) for line in lines) <= 78
    assert b"".join(lines) == b"Subject: [EXT] " + one_line


def test_a_latin1_subject_keeps_its_bytes(system: MailSystem) -> None:
    latin1 = "[tag-me] Grüße aus München, fällig".encode("latin-1")
    field = _delivered_subject(system, latin1)
    assert b"\xef\xbf\xbd" not in field  # no U+FFFD where the bytes were
    value = field.partition(b":")[2].decode("ascii").strip()
    decoded = b"".join(
        part if isinstance(part, bytes) else part.encode("ascii")
        for part, _ in email.header.decode_header(value)
    )
    assert decoded == b"[EXT] " + latin1
