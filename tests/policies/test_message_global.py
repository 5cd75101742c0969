"""A message/global part in base64 or quoted-printable (RFC 6532 3.5 allows the
encoding; a 7-bit path needs it): the message inside is decoded and listed below the
part, as an 8bit one is, so rules see its files, text and HTML. Its bytes are the
part's encoded body: a file to strip there holds the message, and HTML to sanitize
is sanitized in the message decoded, which goes back encoded as it came.
An encoded message/rfc822 (RFC 2046 forbids it) is flagged ``encoded_message`` and
read (and rewritten) alike: readers open it.
"""

from __future__ import annotations

import base64
import binascii
import time
from pathlib import Path

import pytest

from postwarden_policies import (
    Envelope,
    HtmlSanitized,
    Quarantine,
    Reject,
    apply_edits,
    evaluate_message,
    load_policy_set,
    mimetree,
    parse_message,
)
from postwarden_policies.facts import DecodedKind
from postwarden_policies.mimetree import decoded_content

from .policy_helpers import policy
from .test_tnef import _attachment, _mail, _stream

INBOUND = Path(__file__).resolve().parents[2] / "policies" / "examples" / "inbound-default.yaml"
ENV = Envelope(sender="alice@sender.test", recipients=("bob@example.com",))
EXE = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00"
FORWARDED = (
    "From: Jörg <jörg@bücher.example>\r\nSubject: Grüße\r\nMIME-Version: 1.0\r\n\r\n"
    "Hallo, bis morgen.\r\n"
).encode()
WITH_EXE = (
    b"From: a@b.example\r\nSubject: inner\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=IN\r\n\r\n--IN\r\nContent-Type: text/plain\r\n\r\n"
    b"see the file\r\n--IN\r\nContent-Type: application/octet-stream\r\n"
    b'Content-Disposition: attachment; filename="tool.exe"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(EXE) + b"\r\n--IN--\r\n"
)
HTML = b"From: a@b.example\r\nSubject: page\r\nContent-Type: text/html\r\n\r\n"


def _encoded(data: bytes, cte: str) -> bytes:
    if cte == "base64":
        return b"\r\n".join(base64.encodebytes(data).splitlines())
    return binascii.b2a_qp(data.replace(b"\r\n", b"\n"), istext=True).replace(b"\n", b"\r\n")


def _part(message: bytes, cte: str, ctype: str = "message/global") -> bytes:
    """An entity of type ``ctype`` carrying ``message`` in ``cte``."""
    return f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode() + _encoded(
        message, cte
    )


def _forward(
    message: bytes, cte: str, ctype: str = "message/global", boundary: str = "OUT"
) -> bytes:
    """A message forwarding ``message`` as an attachment of type ``ctype`` in ``cte``."""
    return (
        b"From: carol@elsewhere.test\r\nTo: bob@example.com\r\nSubject: fwd\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=OUT\r\n\r\n"
        b"--OUT\r\nContent-Type: text/plain\r\n\r\nforwarded\r\n--OUT\r\n"
        + _part(message, cte, ctype)
        + b"\r\n--OUT--\r\n"
    ).replace(b"OUT", boundary.encode())


def _body(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


ENCODINGS = pytest.mark.parametrize("cte", ["base64", "quoted-printable"])
MESSAGE_TYPES = pytest.mark.parametrize("ctype", ["message/global", "message/rfc822"])


@ENCODINGS
def test_the_message_inside_is_listed(cte: str) -> None:
    facts = parse_message(_forward(WITH_EXE, cte), ENV)
    listed = [(p.path, p.content_type, p.filename, p.in_decoded) for p in facts.parts[2:]]
    assert listed == [
        ("2", "message/global", None, None),
        ("2.1", "multipart/mixed", None, "encoded_message"),
        ("2.1.1", "text/plain", None, "encoded_message"),
        ("2.1.2", "application/octet-stream", "tool.exe", "encoded_message"),
    ]
    assert facts.parts[-1].detected_type == "application/x-dosexec"
    assert not any(p.in_signed for p in facts.parts)
    assert "see the file" in facts.text
    assert facts.flags == frozenset()


@ENCODINGS
def test_a_harmless_forwarded_message_is_delivered_as_it_is(cte: str) -> None:
    raw = _forward(FORWARDED, cte)
    facts = parse_message(raw, ENV)
    assert "malformed" not in facts.flags
    assert "bis morgen" in facts.text
    verdict = evaluate_message(load_policy_set([INBOUND]), raw, ENV)
    assert verdict.decision.action.value == "accept"
    assert verdict.rules == ("tag-external",)
    assert _body(apply_edits(raw, verdict)) == _body(raw)


@ENCODINGS
def test_an_executable_inside_is_rejected(cte: str) -> None:
    verdict = evaluate_message(load_policy_set([INBOUND]), _forward(WITH_EXE, cte), ENV)
    assert isinstance(verdict.decision, Reject)
    assert verdict.rules == ("block-executables",)


@ENCODINGS
def test_a_policy_that_does_not_hold_malformed_mail_sees_the_executable(cte: str) -> None:
    rules = policy("rules:\n  - {name: e, when: {attachment: {filename: '*.exe'}}, then: reject}")
    assert isinstance(evaluate_message(rules, _forward(WITH_EXE, cte), ENV).decision, Reject)


def _html_forwarded(html: bytes, cte: str, levels: int, ctype: str = "message/global") -> bytes:
    """An HTML message forwarded ``levels`` times as an encoded ``ctype``."""
    message = HTML + html
    for level in range(levels):
        message = _forward(message, cte, ctype, boundary=f"OUT{level}")
    return message


def _innermost(raw: bytes) -> bytes:
    """The body of the last part read through the encoded messages of ``raw``."""
    facts = parse_message(raw, ENV, read_decoded=False)
    while facts.parts[-1].content_type.startswith("message/"):
        carrier = facts.parts[-1]
        assert carrier.transfer_encoding in ("base64", "quoted-printable")
        encoded = facts.raw[carrier.body_start : carrier.body_end]
        decoded = base64.b64decode(encoded) if carrier.transfer_encoding == "base64" else (
            binascii.a2b_qp(encoded))
        facts = parse_message(decoded, ENV, read_decoded=False)
    return facts.raw[facts.body_offset :]


@ENCODINGS
@MESSAGE_TYPES
@pytest.mark.parametrize("levels", [1, 2])
def test_html_the_sanitizer_would_change_is_sanitized_and_encoded_again(
        cte: str, ctype: str, levels: int) -> None:
    """It held the message (message/global), or, flagged malformed, none of the message
    was sanitized and the example policy held it (message/rfc822)."""
    message = _html_forwarded(b"<p>hi</p><script>alert(1)</script>\r\n", cte, levels, ctype)
    assert "malformed" not in parse_message(message, ENV).flags
    verdict = evaluate_message(load_policy_set([INBOUND]), message, ENV)
    assert verdict.decision.action.value == "accept"
    path = "2" + ".1.2" * (levels - 1) + ".1"
    assert verdict.changes == (HtmlSanitized(path, (("script", 1),), 36, 11),)
    delivered = apply_edits(message, verdict)
    assert _innermost(delivered) == b"<p>hi</p>\r\n"
    again = parse_message(delivered, ENV)
    assert [(p.path, p.content_type) for p in again.parts] == [
        (p.path, p.content_type) for p in parse_message(message, ENV).parts]
    assert again.flags == parse_message(message, ENV).flags


@ENCODINGS
@MESSAGE_TYPES
@pytest.mark.parametrize("levels", [1, 2])
def test_clean_html_inside_is_delivered_as_it_is(cte: str, ctype: str, levels: int) -> None:
    message = _html_forwarded(b"<p>hi</p>\r\n", cte, levels, ctype)
    verdict = evaluate_message(load_policy_set([INBOUND]), message, ENV)
    assert verdict.decision.action.value == "accept"
    assert _body(apply_edits(message, verdict)) == _body(message)


def test_signed_html_inside_an_encoded_message_still_holds_it() -> None:
    """The message could be rewritten, but not the signed part in it."""
    signed = (b"From: a@b.example\r\nSubject: signed\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; "
              b"boundary=S\r\n\r\n--S\r\nContent-Type: text/html\r\n\r\n<script>x</script>"
              b"<p>hi</p>\r\n--S\r\nContent-Type: application/pkcs7-signature\r\n\r\nMIIB\r\n"
              b"--S--\r\n")
    raw = _forward(signed, "base64", "message/rfc822")
    verdict = evaluate_message(policy("sanitize:\n  html: true\n"), raw, ENV)
    assert isinstance(verdict.decision, Quarantine)
    assert _body(apply_edits(raw, verdict)) == _body(raw)


@pytest.mark.parametrize(("sample", "held"), [("signed_html.eml", True),
                                              ("signed_clean_html.eml", False)])
def test_html_in_signed_data_beside_html_to_sanitize_in_an_encoded_message_is_judged(
        sample: str, held: bool) -> None:
    """The encoded message is rewritten; the signed data in it cannot be."""
    signed = (Path(__file__).resolve().parent / "smime" / sample).read_bytes()
    inner = (b"From: a@b.example\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=IN\r\n\r\n--IN\r\n"
             b"Content-Type: text/html\r\n\r\n<script>x</script><p>hi</p>\r\n--IN\r\n"
             b"Content-Type: message/rfc822\r\n\r\n" + signed.replace(b"\n", b"\r\n")
             + b"\r\n--IN--\r\n")
    raw = _forward(inner, "base64", "message/rfc822")
    verdict = evaluate_message(policy("sanitize:\n  html: true\n"), raw, ENV)
    if held:
        assert verdict.decision == Quarantine(
            "rewrite failed: HTML inside S/MIME signed data would have to change")
    else:
        assert verdict.decision.action.value == "accept"
        assert [change.part for change in verdict.changes] == ["2.1.1"]


def test_an_attachment_to_strip_inside_holds_the_message() -> None:
    inner = WITH_EXE.replace(b"tool.exe", b"plan.docm").replace(base64.b64encode(EXE), b"UEsDBAo=")
    verdict = evaluate_message(load_policy_set([INBOUND]), _forward(inner, "base64"), ENV)
    assert verdict.decision == Quarantine(
        "rewrite failed: a part inside an encoded message cannot be changed"
    )


def test_a_strip_beside_it_leaves_the_encoded_message_intact() -> None:
    macro = (
        b'Content-Type: application/octet-stream; name="plan.docm"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nUEsDBAo=\r\n"
    )
    forwarded = _part(HTML + b"<p>hi</p>\r\n", "base64")
    raw = (
        b"From: carol@elsewhere.test\r\nSubject: two\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        + forwarded
        + b"\r\n--b\r\n"
        + macro
        + b"--b--\r\n"
    )
    verdict = evaluate_message(load_policy_set([INBOUND]), raw, ENV)
    assert "strip-macro-documents" in verdict.rules
    delivered = apply_edits(raw, verdict)
    assert forwarded in delivered
    assert b"UEsDBAo=" not in delivered


@ENCODINGS
def test_an_encoded_message_rfc822_is_flagged_and_read(cte: str) -> None:
    raw = _forward(WITH_EXE, cte, "message/rfc822")
    facts = parse_message(raw, ENV)
    assert facts.flags == {"encoded_message"}
    assert facts.parts[-1].filename == "tool.exe"
    verdict = evaluate_message(load_policy_set([INBOUND]), raw, ENV)
    assert verdict.rules == ("block-executables",)


def test_broken_base64_is_flagged_and_what_decodes_is_read() -> None:
    raw = _forward(WITH_EXE, "base64").replace(b"--OUT--", b"!!!\r\n--OUT--")
    facts = parse_message(raw, ENV)
    assert {"bad_base64", "malformed"} <= facts.flags
    assert "tool.exe" in [p.filename for p in facts.parts]


def test_parts_inside_count_against_the_structure_limits() -> None:
    raw = _forward(WITH_EXE, "base64")  # 6 parts, 3 levels deep
    for limits in ("max_mime_parts: 5", "max_mime_depth: 2"):
        verdict = evaluate_message(policy(f"limits:\n  {limits}\n"), raw, ENV)
        assert isinstance(verdict.decision, Reject), limits


def _nested(levels: int, message: bytes, cte: str) -> bytes:
    for _ in range(levels):
        message = b"From: a@elsewhere.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n" + _part(
            message, cte
        )
    return message


def test_thirty_levels_of_base64_are_read_to_the_bottom() -> None:
    raw = _nested(30, WITH_EXE, "base64")  # each level a third larger than the one inside
    started = time.perf_counter()
    facts = parse_message(raw, ENV)
    assert time.perf_counter() - started < 2
    assert (len(facts.parts), facts.flags) == (33, frozenset())
    assert facts.parts[-1].filename == "tool.exe"
    # The example policy's max_mime_depth is 20: too deep, refused before any rule.
    verdict = evaluate_message(load_policy_set([INBOUND]), raw, ENV)
    assert verdict.rules == ("limit:max_mime_depth",)


def test_nesting_that_decodes_to_as_much_spends_the_search_budget() -> None:
    """Quoted-printable of short lines without "=" decodes to itself: each level of
    nesting would decode the whole message again."""
    raw = _nested(60, b"Subject: s\r\n\r\n" + b"words\r\n" * 200_000, "quoted-printable")
    started = time.perf_counter()
    facts = parse_message(raw, ENV)
    assert time.perf_counter() - started < 3
    assert "too_deep" in facts.flags
    assert len(facts.parts) <= 30  # 16 MB and 16 times the message: 28 levels of 1.4 MB


@pytest.mark.parametrize(("html", "clean"), [(b"<p>fine</p>", b"<p>fine</p>"),
                                             (b"<script>x</script><p>a</p>", b"<p>a</p>")])
def test_html_deep_in_encoded_messages_is_sanitized(html: bytes, clean: bytes) -> None:
    raw = _nested(30, HTML + html, "base64")
    sanitizing = policy("sanitize:\n  html: true\n")
    started = time.perf_counter()
    verdict = evaluate_message(sanitizing, raw, ENV)
    assert time.perf_counter() - started < 3
    assert verdict.decision.action.value == "accept"
    assert _innermost(apply_edits(raw, verdict)) == clean


def test_html_deep_in_encoded_messages_is_sanitized_decoding_each_level_a_few_times(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Each level's rewrite parsed all the levels below it (and checked its result so):
    # 30 levels were decoded some 960 times, and 30 of 1 MB took 4 s.
    decoded: list[int] = []

    def counted(kind: DecodedKind, body: bytes, cte: str) -> tuple[bytes, bool] | None:
        decoded.append(len(body))
        return decoded_content(kind, body, cte)
    monkeypatch.setattr(mimetree, "decoded_content", counted)
    raw = _nested(30, HTML + b"<script>x</script><p>a</p>", "quoted-printable")
    verdict = evaluate_message(policy("sanitize:\n  html: true\n"), raw, ENV)
    assert _innermost(apply_edits(raw, verdict)) == b"<p>a</p>"
    assert len(decoded) <= 3 * 30  # the evaluation's parse, and the result's check


def test_a_tnef_stream_in_an_encoded_message_global_gives_each_part_its_own_path() -> None:
    # Its files were listed at "2.1", ..., and so was the message decoded from it.
    raw = _mail(_stream(_attachment("evil.exe", EXE), _attachment("b.txt", b"hi")),
                content_type=b"message/global")
    facts = parse_message(raw, ENV)
    assert [(p.path, p.filename, p.in_decoded) for p in facts.parts[2:]] == [
        ("2", "winmail.dat", None), ("2.1", "evil.exe", None), ("2.2", "b.txt", None),
        ("2.3", None, "encoded_message")]
    strip = ("rules:\n  - name: r\n    when: {attachment: {filename: '*.exe'}}\n"
             "    then: strip_attachment\n")
    # Stripping it from the stream would change the message read through: held, as documented.
    assert isinstance(evaluate_message(policy(strip), raw, ENV).decision, Quarantine)
