"""Opaque S/MIME signed data (application/pkcs7-mime, signed-data): the MIME entity
inside is listed below the part, so rules see its attachments, text and HTML; it
cannot be rewritten, so what a rewrite would change there holds the message.

The samples in smime/ were made once with OpenSSL 3.0 and a throwaway self-signed
certificate: ``openssl smime -sign -nodetach`` (DER), ``-stream`` as well for
``signed_exe_ber.eml`` (BER: open lengths, the content in 4 KiB segments),
``nested_*.eml`` signing a signed message again, ``enveloped_exe.eml`` with
``openssl smime -encrypt``.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postwarden_policies import (
    Envelope,
    PolicySet,
    Quarantine,
    Reject,
    ReplaceBody,
    apply_edits,
    evaluate_message,
    load_policy_set,
    parse_message,
)
from postwarden_policies.cms import signed_content

from .policy_helpers import policy
from .test_evasions import _uuencoded

SAMPLES = Path(__file__).resolve().parent / "smime"
INBOUND = Path(__file__).resolve().parents[2] / "policies" / "examples" / "inbound-default.yaml"
ENV = Envelope(sender="alice@sender.test", recipients=("bob@example.com",))
SIGNED_DATA_OID = bytes.fromhex("06092a864886f70d010702")
DATA_OID = bytes.fromhex("06092a864886f70d010701")


def _sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def _sanitizing(signed_mail: str, rules: str = "") -> PolicySet:
    return policy(f"sanitize:\n  html: true\n  signed_mail: {signed_mail}\n{rules}\n")


def _der(raw: bytes) -> bytes:
    """The DER of a sample's smime.p7m (its whole body, base64)."""
    return base64.b64decode(raw.split(b"\n\n", 1)[1])


def _with_body(raw: bytes, der: bytes) -> bytes:
    """``raw`` with ``der`` as its smime.p7m."""
    head = raw.split(b"\n\n", 1)[0]
    return head + b"\n\n" + base64.encodebytes(der)


def _ber(content: bytes) -> bytes:
    """A signed-data ContentInfo in BER, open lengths throughout, around ``content``
    (the constructed OCTET STRING's bytes: its segments and end-of-contents mark)."""
    return (
        b"\x30\x80" + SIGNED_DATA_OID + b"\xa0\x80\x30\x80\x02\x01\x01\x31\x00"
        + b"\x30\x80" + DATA_OID + b"\xa0\x80" + content
        + b"\0\0" * 4  # [0], encapContentInfo, SignedData, [0]; ContentInfo's left open
    )


@pytest.mark.parametrize("name", ["signed_exe.eml", "signed_exe_ber.eml"])
def test_an_executable_inside_signed_data_is_rejected(name: str) -> None:
    raw = _sample(name)
    facts = parse_message(raw, ENV)
    inner = [(p.path, p.content_type, p.filename, p.detected_type) for p in facts.parts[1:]]
    assert inner == [
        ("1", "multipart/mixed", None, None),
        ("1.1", "text/plain", None, None),
        ("1.2", "application/octet-stream", "setup.exe", "application/x-dosexec"),
    ]
    assert all(p.in_signed and p.in_decoded == "signed_data" for p in facts.parts[1:])
    assert facts.flags == frozenset()
    verdict = evaluate_message(load_policy_set([INBOUND]), raw, ENV)
    assert isinstance(verdict.decision, Reject)
    assert verdict.rules == ("block-executables",)


def test_ber_segments_are_joined_in_order() -> None:
    facts = parse_message(_sample("signed_exe_ber.eml"), ENV)
    # 9.8 kB of content in 4 KiB segments: lines cut between segments read whole.
    assert "Line 0050 of the release notes" in facts.text
    assert "Line 0119 of the release notes" in facts.text


def test_rules_see_the_text_html_and_detected_type_inside() -> None:
    rules = policy("""
    rules:
      - name: by-content
        when:
          attachment:
            detected_type: [application/x-dosexec]
        then: reject
      - name: html
        when:
          has_html: true
        then: quarantine
      - name: words
        when:
          body: 'signed note'
        then: discard
    """)
    decided = {
        name: type(evaluate_message(rules, _sample(name), ENV).decision).__name__
        for name in ("signed_exe.eml", "signed_html.eml", "signed_text.eml")
    }
    assert decided == {
        "signed_exe.eml": "Reject",
        "signed_html.eml": "Quarantine",
        "signed_text.eml": "Discard",
    }


@pytest.mark.parametrize("signed_mail", ["skip", "sanitize"])
@pytest.mark.parametrize("name", ["signed_html.eml", "nested_html.eml"])
def test_a_script_inside_signed_data_holds_the_message(signed_mail: str, name: str) -> None:
    """Under `sanitize` too: the HTML is inside the DER, which cannot be rewritten."""
    raw = _sample(name)
    verdict = evaluate_message(_sanitizing(signed_mail), raw, ENV)
    assert verdict.decision == Quarantine(
        "rewrite failed: HTML inside S/MIME signed data would have to change"
    )
    assert "rewrite_failed" in verdict.flags
    assert not any(isinstance(edit, ReplaceBody) for edit in verdict.edits)


def test_the_example_policy_holds_a_script_inside_signed_data() -> None:
    verdict = evaluate_message(load_policy_set([INBOUND]), _sample("signed_html.eml"), ENV)
    assert isinstance(verdict.decision, Quarantine)
    assert "rewrite_failed" in verdict.flags


@pytest.mark.parametrize("signed_mail", ["skip", "sanitize"])
@pytest.mark.parametrize(
    "name", ["signed_text.eml", "signed_clean_html.eml", "nested_clean_html.eml"]
)
def test_clean_signed_data_is_delivered_byte_for_byte(signed_mail: str, name: str) -> None:
    raw = _sample(name)
    rules = "rules:\n  - {name: exe, when: {attachment: {filename: '*.exe'}}, then: reject}\n"
    verdict = evaluate_message(_sanitizing(signed_mail, rules), raw, ENV)
    assert verdict.decision.action.value == "accept"
    assert apply_edits(raw, verdict) == raw


def test_the_example_policy_leaves_a_clean_signed_body_as_it_is() -> None:
    raw = _sample("signed_text.eml")
    verdict = evaluate_message(load_policy_set([INBOUND]), raw, ENV)
    assert verdict.decision.action.value == "accept"
    assert not any(isinstance(edit, ReplaceBody) for edit in verdict.edits)
    delivered = apply_edits(raw, verdict)
    assert delivered.split(b"\n\n", 1)[1] == raw.split(b"\n\n", 1)[1]


@pytest.mark.parametrize("signed_mail", ["skip", "sanitize"])
def test_an_attachment_to_strip_inside_signed_data_holds_the_message(signed_mail: str) -> None:
    rules = "rules:\n  - {name: s, when: {attachment: {filename: '*.exe'}}, then: strip_attachment}"
    verdict = evaluate_message(_sanitizing(signed_mail, rules), _sample("signed_exe.eml"), ENV)
    assert verdict.decision == Quarantine(
        "rewrite failed: a part inside S/MIME signed data cannot be changed"
    )


def test_a_strip_beside_signed_data_leaves_it_intact() -> None:
    """The rewrite's check re-reads the signed data and finds it byte for byte."""
    signed = _sample("signed_text.eml").split(b"\n", 3)[3]  # from MIME-Version on
    macro = (
        b'Content-Type: application/octet-stream; name="plan.docm"\n'
        b"Content-Transfer-Encoding: base64\n\nUEsDBAo=\n"
    )
    raw = (
        b"From: alice@sender.test\nTo: bob@example.com\nSubject: two\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n' + signed + b"\n--b\n"
        + macro + b"--b--\n"
    )
    verdict = evaluate_message(load_policy_set([INBOUND]), raw, ENV)
    assert "strip-macro-documents" in verdict.rules
    delivered = apply_edits(raw, verdict)
    assert signed in delivered
    assert b"UEsDBAo=" not in delivered


@pytest.mark.parametrize(
    "declared",
    [
        b"application/x-pkcs7-mime; name=smime.p7m",  # no smime-type
        b"application/pkcs7-mime; smime-type=enveloped-data",  # a wrong one
        b"application/pkcs7-mime",
    ],
)
def test_the_content_decides_not_the_smime_type(declared: bytes) -> None:
    raw = _sample("signed_exe.eml").replace(
        b'application/x-pkcs7-mime; smime-type=signed-data; name="smime.p7m"', declared
    )
    assert declared in raw
    verdict = evaluate_message(load_policy_set([INBOUND]), raw, ENV)
    assert isinstance(verdict.decision, Reject)


_DECLARED = b'Content-Type: application/x-pkcs7-mime; smime-type=signed-data; name="smime.p7m"\n'


@pytest.mark.parametrize(
    "declared",
    [
        # Thunderbird opens an octet-stream by its file name's type, and so S/MIME.
        b'Content-Type: application/octet-stream; name="smime.p7m"\n',
        b"",  # no Content-Type: text/plain, base64
    ],
)
def test_signed_data_by_its_content_whatever_the_type(declared: bytes) -> None:
    raw = _sample("signed_exe.eml").replace(_DECLARED, declared)
    assert raw != _sample("signed_exe.eml")
    facts = parse_message(raw, ENV)
    assert facts.parts[0].detected_type == "application/pkcs7-mime"
    assert facts.parts[-1].filename == "setup.exe"
    verdict = evaluate_message(load_policy_set([INBOUND]), raw, ENV)
    assert isinstance(verdict.decision, Reject)


def test_signed_data_attached_as_an_octet_stream_is_read() -> None:
    body = _sample("signed_exe.eml").split(b"\n\n", 1)[1]
    raw = (
        b"From: alice@sender.test\nTo: bob@example.com\nSubject: fwd\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
        b'see attached\n--b\nContent-Type: application/octet-stream; name="smime.p7m"\n'
        b"Content-Transfer-Encoding: base64\n\n" + body + b"\n--b--\n"
    )
    verdict = evaluate_message(load_policy_set([INBOUND]), raw, ENV)
    assert isinstance(verdict.decision, Reject)
    assert verdict.rules == ("block-executables",)


def _attached_p7m(name: str, declared: bytes) -> bytes:
    """A message with a signed file (CAdES, ``openssl cms -sign -nodetach -binary``)."""
    data = base64.encodebytes((SAMPLES / name).read_bytes())
    return (
        b"From: alice@sender.test\nTo: bob@example.com\nSubject: fattura\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
        b"in allegato\n--b\nContent-Type: " + declared + b'; name="' + name.encode()
        + b'"\nContent-Transfer-Encoding: base64\n\n' + data + b"--b--\n"
    )


@pytest.mark.parametrize("declared", [b"application/octet-stream", b"application/pkcs7-mime"])
def test_a_signed_file_is_an_attachment_inside_not_broken_mime(declared: bytes) -> None:
    # Signed invoices (FatturaPA's .xml.p7m) and PDFs: the content is a file, no MIME.
    raw = _attached_p7m("invoice.pdf.p7m", declared)
    facts = parse_message(raw, ENV)
    assert facts.flags == frozenset()
    assert [(p.path, p.detected_type) for p in facts.parts[2:]] == [
        ("2", "application/pkcs7-mime"), ("2.1", "application/pdf")]
    verdict = evaluate_message(load_policy_set([INBOUND]), raw, ENV)
    assert verdict.decision.action.value == "accept"
    assert apply_edits(raw, verdict).endswith(raw.split(b"\n\n", 1)[1])


def test_an_executable_signed_as_a_file_is_rejected() -> None:
    raw = _attached_p7m("tool.exe.p7m", b"application/octet-stream")
    verdict = evaluate_message(load_policy_set([INBOUND]), raw, ENV)
    assert isinstance(verdict.decision, Reject)
    assert verdict.rules == ("block-executables",)


def test_enveloped_data_stays_opaque() -> None:
    facts = parse_message(_sample("enveloped_exe.eml"), ENV)
    assert [p.content_type for p in facts.parts] == ["application/x-pkcs7-mime"]
    assert facts.flags == frozenset()


def test_parts_inside_count_against_the_structure_limits() -> None:
    raw = _sample("signed_exe.eml")  # 4 parts, 2 levels deep
    for limits in ("max_mime_parts: 3", "max_mime_depth: 1"):
        verdict = evaluate_message(policy(f"limits:\n  {limits}\n"), raw, ENV)
        assert isinstance(verdict.decision, Reject), limits


@pytest.mark.parametrize("keep", [0.03, 0.2, 0.3, 0.5, 0.99])
def test_cut_signed_data_is_flagged_and_what_was_read_listed(keep: float) -> None:
    raw = _sample("signed_exe.eml")
    der = _der(raw)
    facts = parse_message(_with_body(raw, der[: int(len(der) * keep)]), ENV)
    assert {"unreadable_smime", "malformed"} <= facts.flags
    if keep >= 0.3:  # the content was read through
        assert "setup.exe" in [p.filename for p in facts.parts]
    verdict = evaluate_message(load_policy_set([INBOUND]), _with_body(raw, der[:400]), ENV)
    assert verdict.rules == ("hold-broken-mime",)


@pytest.mark.parametrize("prefix", [b"", b"\x30\x80" + SIGNED_DATA_OID])
def test_five_megabytes_of_garbage_cost_no_more_than_reading_them(prefix: bytes) -> None:
    raw = _with_body(_sample("signed_exe.eml"), prefix + os.urandom(5_000_000))
    started = time.perf_counter()
    facts = parse_message(raw, ENV)
    assert time.perf_counter() - started < 2
    assert len(facts.parts) == 1
    assert ("unreadable_smime" in facts.flags) == bool(prefix)


def _nested(levels: int, entity: bytes) -> bytes:
    """A message of signed data ``levels`` deep, each level in binary, ``entity`` inside."""
    for _ in range(levels):
        segments = b"".join(
            b"\x04\x82" + len(entity[i : i + 4096]).to_bytes(2, "big") + entity[i : i + 4096]
            for i in range(0, len(entity), 4096)
        )
        entity = (
            b"Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            + _ber(b"\x24\x80" + segments + b"\0\0")
        )
    return b"From: a@elsewhere.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n" + entity


@pytest.mark.parametrize(("html", "held"), [(b"<p>fine</p>", False), (b"<script>x</script>", True)])
def test_html_deep_in_signed_data_is_judged(html: bytes, held: bool) -> None:
    raw = _nested(30, b"Content-Type: text/html\r\n\r\n" + html)
    facts = parse_message(raw, ENV)
    assert (len(facts.parts), facts.flags) == (31, frozenset())
    verdict = evaluate_message(_sanitizing("skip"), raw, ENV)
    assert isinstance(verdict.decision, Quarantine) == held
    assert apply_edits(raw, verdict) == raw


def test_signed_data_nested_in_binary_spends_the_search_budget() -> None:
    raw = _nested(60, b"Content-Type: text/plain\r\n\r\n" + b"words " * 200_000)
    started = time.perf_counter()
    facts = parse_message(raw, ENV)
    assert time.perf_counter() - started < 2
    assert "too_deep" in facts.flags
    assert len(facts.parts) <= 30  # 16 MB and 16 times the message: 29 levels of 1.2 MB


def test_millions_of_empty_segments_are_cut_short() -> None:
    der = _ber(b"\x24\x80" + b"\x04\x00" * 2_000_000 + b"\x04\x02MZ\x00\x00")
    started = time.perf_counter()
    found = signed_content(der)
    assert time.perf_counter() - started < 1
    assert found is not None and not found.complete


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x04\x03abc", b"abc"),  # primitive, the one DER allows
        (b"\x24\x80\x04\x02ab\x04\x01c\x00\x00", b"abc"),  # segments, open length
        (b"\x24\x09\x04\x02ab\x24\x03\x04\x01c", b"abc"),  # definite, nested
        (b"\x24\x80\x24\x80\x04\x01a\x00\x00\x04\x02bc\x00\x00", b"abc"),  # open, nested
    ],
)
def test_octet_string_forms(content: bytes, expected: bytes) -> None:
    found = signed_content(_ber(content))
    assert found is not None
    assert (found.content, found.complete) == (expected, True)


def test_nesting_past_the_limit_stops() -> None:
    found = signed_content(_ber(b"\x24\x80" * 40 + b"\x04\x01a" + b"\0\0" * 40))
    assert found is not None and not found.complete


def test_a_length_past_the_data_is_refused() -> None:
    found = signed_content(_ber(b"\x04\x84\x7f\xff\xff\xffabc")[:-8])  # cut after "abc"
    assert found is not None
    assert (found.content, found.complete) == (b"abc", False)


def test_no_content_is_none() -> None:
    detached = (
        b"\x30\x80" + SIGNED_DATA_OID + b"\xa0\x80\x30\x80\x02\x01\x01\x31\x00"
        + b"\x30\x0b" + DATA_OID + b"\x31\x00" + b"\0\0" * 3
    )
    assert signed_content(detached) is None
    assert signed_content(b"\x30\x03\x06\x01\x00") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_anything_after_the_signed_data_oid_never_raises(tail: bytes) -> None:
    found = signed_content(b"\x30\x80" + SIGNED_DATA_OID + tail)
    assert found is None or len(found.content) <= len(tail)


def test_a_text_part_of_signed_data_with_a_uuencoded_file_lists_each_part_once() -> None:
    # Read as text too, the DER listed the file again, at the decoded entity's path "1.1".
    inner = b"Content-Type: text/plain\r\n\r\nhello\r\n" + _uuencoded(b"inner.exe", b"MZ" * 40)
    der = _ber(b"\x04\x81" + bytes([len(inner)]) + inner)
    raw = (
        b"From: alice@sender.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(der) + b"--b--\r\n"
    )
    facts = parse_message(raw, ENV)
    assert [(p.path, p.filename) for p in facts.parts] == [
        ("", None), ("1", None), ("1.1", None), ("1.1.1", "inner.exe")]
    verdict = evaluate_message(policy(
        "rules:\n  - name: r\n    when: {attachment: {filename: '*.exe'}}\n"
        "    then: strip_attachment\n"), raw, ENV)
    assert verdict.decision == Quarantine(
        "rewrite failed: a part inside S/MIME signed data cannot be changed")
