"""Text no charset is declared for reads as mail readers show it, not as U+FFFD.

A Latin-1 mailer writes a Subject in raw 8-bit bytes and a text part with no
charset parameter. Readers show "für" (UTF-8 where the bytes are UTF-8, else
their default, windows-1252; Thunderbird reads a raw header in the charset its
message declares), so a rule on "für" must match, and the audit shows it.
"""

from __future__ import annotations

import pytest

from postwarden_policies import Envelope, evaluate_message, parse_message
from postwarden_policies.charsets import decode_undeclared
from postwarden_policies.headers import parse_header_section

from .policy_helpers import MAIL_HEAD, body_rule_matches, rule_policy


@pytest.mark.parametrize(("raw", "expected"), [
    pytest.param(b"Subject: Gewinnspiel f\xfcr Sie\n\n", "Gewinnspiel für Sie", id="latin-1"),
    pytest.param(b"Subject: caf\xc3\xa9 \xe9 \x80\n\n", "café é €", id="utf-8-and-windows-1252"),
    pytest.param(b"Subject: \xd0\xd2\xc9\xd7\xc5\xd4\nContent-Type: text/plain; charset=koi8-r\n\n",
                 "привет", id="the-entity-charset"),
    pytest.param(b"Content-Type: text/plain; charset=shift_jis\nSubject: \x82\xa0\x82\xa2\n\n",
                 "あい", id="multi-byte-entity-charset"),
    pytest.param(b"Subject: f\xfcr\nContent-Type: text/plain; charset=utf-16\n\n", "für",
                 id="not-ascii-based"),
])
def test_a_raw_eight_bit_header_reads_as_readers_show_it(raw: bytes, expected: str) -> None:
    headers = parse_header_section(raw, 0, len(raw), set()).headers
    subject = next(h for h in headers if h.name == "Subject")
    assert subject.value == expected
    assert subject.raw_value.encode("utf-8", "surrogateescape") in raw  # as received


def test_the_c1_bytes_windows_1252_leaves_unassigned_read_as_c1_controls() -> None:
    assert decode_undeclared(b"\x81\x8d\x8f\x90\x9d\xfc") == "\x81\x8d\x8f\x90\x9dü"


def test_a_subject_rule_matches_a_latin_1_subject_and_the_audit_shows_it() -> None:
    raw = (b"From: a@elsewhere.test\r\nTo: b@example.com\r\n"
           b"Subject: Gewinnspiel f\xfcr Sie\r\n\r\nHallo\r\n")
    policy = rule_policy("subject: '(?i)gewinnspiel für'", "reject")
    assert evaluate_message(policy, raw, Envelope()).rules == ("r",)
    assert parse_message(raw, Envelope()).subject == "Gewinnspiel für Sie"


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=x-no-such"])
def test_a_body_rule_matches_latin_1_text_with_no_charset_readers_know(
        content_type: str) -> None:
    raw = (f"{MAIL_HEAD}Content-Type: {content_type}\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + b"Gewinnspiel f\xfcr Sie\r\n"
    assert body_rule_matches("(?i)gewinnspiel für", raw)
