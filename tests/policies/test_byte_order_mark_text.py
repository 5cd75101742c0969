"""Body rules read text as readers show it: a byte order mark overrules the label for
browsers and the webmail showing the part (WHATWG's decode), so text is read by it too."""

from __future__ import annotations

import pytest

from postwarden_policies import Envelope, Reject, evaluate_message, parse_message

from .policy_helpers import rule_policy


@pytest.mark.parametrize("content_type", ["text/plain; charset=windows-1251",
                                          "text/html; charset=koi8-r"])
def test_utf8_text_under_another_label_is_read_by_its_mark(content_type: str) -> None:
    # Read as windows-1251, the words were mojibake ("СЃРєРёРґРєР°").
    head = ("From: a@elsewhere.test\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
    raw = head.encode() + "\ufeff<p>Ваша скидка</p>\r\n".encode()
    verdict = evaluate_message(rule_policy("body: скидка", "reject"), raw, Envelope())
    assert isinstance(verdict.decision, Reject)


def test_utf16_text_read_as_sent_ends_with_its_last_character() -> None:
    # As Postfix passes it on: a CR before each lone LF byte, and SMTP's last line end.
    text = "Hello Bob,\nbodymark\n".encode("utf-16-le").replace(b"\n", b"\r\n") + b"\r\n"
    raw = (b"From: a@elsewhere.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; "
           b"charset=utf-16le\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text)
    facts = parse_message(raw, Envelope())
    assert "Hello Bob,\nbodymark\n" in facts.text and not facts.text.endswith("\ufffd")
