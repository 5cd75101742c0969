"""A prefixed Subject as Postfix delivers it, through the real milter: it keeps the
folding it came with, no line passes 998 octets, and raw 8-bit bytes that are not
UTF-8 (a Latin-1 or KOI8-R Subject) arrive as the text readers showed for them, in
RFC 2047 encoded words (pymilter sends header values as UTF-8 text only)."""

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


@pytest.mark.parametrize(("text", "charset"), [
    pytest.param("Привет из Москвы", "koi8-r", id="koi8-r"),
    pytest.param("会議の資料", "shift_jis", id="shift_jis"),
    pytest.param("Grüße aus München, fällig", "us-ascii", id="latin-1-undeclared"),
])
def test_a_raw_subject_shows_readers_the_text_they_read_before(
    system: MailSystem, text: str, charset: str,
) -> None:
    # A raw 8-bit Subject reads in the charset its message declares (else windows-1252):
    # prefixed, it went out in ISO-8859-1 encoded words of its bytes, which showed a
    # KOI8-R or Shift_JIS Subject garbled.
    raw = text.encode("latin-1" if charset == "us-ascii" else charset)  # read as cp1252
    sample = messages.clean(PLACEHOLDER.decode())
    data = sample.data.replace(PLACEHOLDER, b"[tag-me] " + raw).replace(
        b"charset=us-ascii", b"charset=" + charset.encode())
    result = send_message(system.postfix.port, data, SENDER, [RECIPIENT])
    assert result.accepted, result
    delivered = Delivered.parse(
        system.capture.wait_for_message(has_header("Message-ID", sample.message_id)).data)
    value = delivered.header("Subject")
    assert value is not None and value.isascii()
    shown = str(email.header.make_header(email.header.decode_header(value)))
    assert shown == f"[EXT] [tag-me] {text}"
