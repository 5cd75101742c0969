"""Quoted-printable with a bare CR: the sanitizer must see what readers decode.

``binascii.a2b_qp`` reads ``=`` and a bare CR as a soft line break that runs to
the next LF, dropping everything between; readers that take a CR for a line end
(RFC 2045 decoders in mail readers) decode that text as markup. HTML hidden
there must not pass unseen in a part that otherwise needs no sanitizing.
"""

from __future__ import annotations

import binascii
import email
import email.policy

import pytest

from postwarden_policies import Envelope, evaluate_message
from postwarden_policies.delivery import apply_edits

from .policy_helpers import policy

SANITIZE = policy("sanitize: {html: true, remote_images: strip}\n")


def _as_a_cr_reading_reader_decodes(payload: bytes) -> bytes:
    """Quoted-printable decoded by a reader for which a CR alone ends a line too."""
    return binascii.a2b_qp(b"\r\n".join(payload.splitlines()))


@pytest.mark.parametrize(
    "hidden",
    [b'<img src="x" onerror="alert(1)">', b'<img src="https://track.test/p.gif">'],
    ids=["handler", "remote-image"],
)
def test_markup_after_an_equals_sign_and_a_bare_cr_is_sanitized(hidden: bytes) -> None:
    raw = (
        b"From: a@elsewhere.test\r\nTo: bob@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"<p>hi</p>=\r" + hidden + b"\r\n<p>more</p>\r\n"
    )
    verdict = evaluate_message(SANITIZE, raw, Envelope())
    delivered = email.message_from_bytes(apply_edits(raw, verdict), policy=email.policy.compat32)
    assert delivered.get_content_type() == "text/html"
    payload = delivered.get_payload(decode=False)
    assert isinstance(payload, str)
    shown = _as_a_cr_reading_reader_decodes(payload.encode("ascii")).decode()
    assert "onerror" not in shown and "track.test" not in shown
    assert "<p>hi</p>" in shown and "<p>more</p>" in shown
