"""A sanitized or stripped part never holds a line that reads as a boundary delimiter.

nh3 decodes ``&#45;&#45;B`` to ``--B``, and quoted-printable wraps a long line
wherever the 76th character falls: either could put a delimiter of the
enclosing multipart at the start of a line, which the read-back check then
catches by holding the message -- the sender's own mail, or an innocent
newsletter's. The rewrite writes such dashes so that no line starts with one.
"""

from __future__ import annotations

import email
import email.policy

import pytest

from postwarden_policies import Envelope, evaluate_message
from postwarden_policies.delivery import apply_edits

from .policy_helpers import policy

SANITIZE = policy("sanitize: {html: true}\n")
STRIP = policy(
    "rules:\n  - name: r\n    when: {attachment: {filename: '*.exe'}}\n"
    "    then: strip_attachment\n"
)
BOUNDARY = "B0undary"


def _multipart(html_part: str, attachment: str = "") -> bytes:
    return (
        "From: a@elsewhere.test\r\nTo: bob@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{BOUNDARY}"\r\n\r\n'
        f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        f"--{BOUNDARY}\r\n{html_part}\r\n{attachment}--{BOUNDARY}--\r\n"
    ).encode()


def _html(cte: str, body: str) -> str:
    return (
        f"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
        f"{body}"
    )


def _delivered(raw: bytes, policy_set: object) -> email.message.Message:
    verdict = evaluate_message(policy_set, raw, Envelope())  # type: ignore[arg-type]
    assert verdict.action.value == "accept", verdict
    assert verdict.changes
    return email.message_from_bytes(apply_edits(raw, verdict), policy=email.policy.compat32)


def _parts(message: email.message.Message) -> list[email.message.Message]:
    payload = message.get_payload()
    assert isinstance(payload, list)
    return [part for part in payload if isinstance(part, email.message.Message)]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(f"<p>x</p>\r\n&#45;&#45;{BOUNDARY}\r\n<script>t()</script>", id="reference"),
        pytest.param(f"<p>x</p>\r\n&#45;&#45;{BOUNDARY}&#45;&#45;<script>t()</script>",
                     id="close-delimiter"),
        pytest.param(f"<p>x&#13;&#45;&#45;{BOUNDARY}</p><script>t()</script>", id="bare-cr"),
        pytest.param(f'<p title="a\r\n&#45;&#45;{BOUNDARY}">x</p><script>t()</script>',
                     id="in-attribute"),
        pytest.param(f"<b onclick=x>\r\n--{BOUNDARY}x\r\n-- sig</b>", id="longer-line"),
    ],
)
@pytest.mark.parametrize("cte", ["8bit", "7bit", "quoted-printable"])
def test_a_decoded_delimiter_in_sanitized_html_is_delivered_not_held(cte: str, body: str) -> None:
    raw = _multipart(_html(cte, body.replace("=", "=3D") if cte == "quoted-printable" else body))
    parts = _parts(_delivered(raw, SANITIZE))
    assert len(parts) == 2
    html = parts[1].get_payload(decode=True)
    assert isinstance(html, bytes)
    assert b"<script>" not in html and BOUNDARY.encode() in html
    assert not any(line.startswith(b"--") for line in html.splitlines())


def test_a_quoted_printable_wrap_before_a_delimiter_is_delivered_not_held() -> None:
    """The line breaks QP adds fall where the sender chooses, so a line of 75
    characters puts the rest at the start of a line."""
    shown = "<p>" + "a" * 72 + f"--{BOUNDARY}\r\n-" + "b" * 74 + "-</p>"
    raw = _multipart(_html("quoted-printable", shown + "<script>t()</script>"))
    parts = _parts(_delivered(raw, SANITIZE))
    assert len(parts) == 2
    encoded = parts[1].get_payload(decode=False)
    assert isinstance(encoded, str)
    assert all(len(line) <= 76 and not line.startswith("-") for line in encoded.splitlines())
    assert parts[1].get_payload(decode=True) == shown.encode()


def test_a_stripped_file_named_to_wrap_into_a_delimiter_is_delivered_not_held() -> None:
    """The notice naming a stripped file is quoted-printable: its name could wrap to
    the start of a line."""
    name = "x" * 59 + f"--{BOUNDARY} .exe"
    attachment = (
        f'--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n'
        f'Content-Disposition: attachment; filename="{name}"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n"
    )
    raw = _multipart(_html("8bit", "<p>hi</p>"), attachment)
    parts = _parts(_delivered(raw, STRIP))
    assert len(parts) == 3
    notice = parts[2].get_payload(decode=True)
    encoded = parts[2].get_payload(decode=False)
    assert isinstance(notice, bytes) and isinstance(encoded, str)
    assert name.encode() in notice.replace(b"\r\n", b"")
    assert not any(line.startswith("-") for line in encoded.splitlines())
