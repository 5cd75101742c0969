"""Validation of the send request: every field, every code, all problems at once."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from postwarden_admin_api.addresses import (
    AddressError,
    Mailbox,
    mask,
    parse_mailbox,
    sender_matches,
)
from postwarden_admin_api.errors import ApiError
from postwarden_admin_api.send import attachments
from postwarden_admin_api.send.build import build_message
from postwarden_admin_api.send.checks import check_address_headers
from postwarden_admin_api.send.request_model import Attachment, Caps, SendRequest, parse_request
from postwarden_policies import Envelope, parse_message, uuencode
from postwarden_policies.charsets import decode_as_readers
from tests import binhex

CAPS = Caps(max_recipients=5, max_message_bytes=10_000, max_attachment_bytes=1_000)
BASE: dict[str, Any] = {
    "from": "App <app@example.com>",
    "to": ["alice@example.org"],
    "subject": "Hello",
    "text": "Hi there",
}


# "CEO <ceo@example.com>, Billing", as an encoded word.
ENCODED_MAILBOX = "=?utf-8?b?Q0VPIDxjZW9AZXhhbXBsZS5jb20+LCBCaWxsaW5n?="


def allow_all(mailbox: Mailbox) -> bool:
    return True


def parse(**changes: Any) -> SendRequest:
    body = {**BASE, **changes}
    return parse_request({k: v for k, v in body.items() if v is not None}, CAPS, allow_all)


def refusal(**changes: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(**changes)
    return caught.value


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def attached(filename: str, content_type: str, content: bytes = b"", *,
             raw: str | None = None) -> dict[str, Any]:
    """A request change with one attachment (``raw``: the content field as sent)."""
    encoded = raw if raw is not None else b64(content)
    return {"attachments": [{"filename": filename, "content_type": content_type,
                             "content": encoded}]}


def attachment_refusal(filename: str, content_type: str, content: bytes) -> str | None:
    """Why an attachment is refused, alone in its request (its BinHex reads' budget)."""
    return attachments.refusal_reason(filename, content_type, content, uuencode.Budget())


def text_refusal(text: bytes) -> str | None:
    """Why a text is refused, alone in its request."""
    return attachments.embedded_reason(text, uuencode.Budget())


def test_a_valid_request_is_parsed() -> None:
    request = parse(cc="Bob <BOB@Example.ORG>", bcc=["alice@EXAMPLE.org", "carol@example.net"])
    assert request.sender == Mailbox("app", "example.com", "App")
    assert [m.key for m in request.recipients] == [
        "alice@example.org", "bob@example.org", "carol@example.net"
    ]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        pytest.param("user@bücher.example", "user@xn--bcher-kva.example", id="idn"),
        pytest.param("user@XN--BCHER-KVA.example", "user@xn--bcher-kva.example", id="a-label"),
        pytest.param("User@EXAMPLE.com", "User@example.com", id="domain-lowered"),
        pytest.param('"Doe, John" <j.doe+x@example.com>', "j.doe+x@example.com", id="quoted-name"),
        # IDNA's other full stops are dots (RFC 3490, 3.1).
        pytest.param("bob@bücher\u3002example", "bob@xn--bcher-kva.example",
                     id="ideographic-full-stop"),
        # DNS's root dot: the same domain, as Postfix and the policy rules read it.
        pytest.param("user@Example.COM.", "user@example.com", id="root-dot"),
        pytest.param("user@bücher.example\u3002", "user@xn--bcher-kva.example",
                     id="root-dot-as-ideographic-full-stop"),
    ],
)
def test_addresses_are_normalised(text: str, address: str) -> None:
    assert parse_mailbox(text).address == address


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("no-at-sign", id="no-at"),
        pytest.param("a@localhost", id="not-fqdn"),
        pytest.param("a@localhost.", id="not-fqdn-root-dot"),
        pytest.param("a@example.com..", id="two-root-dots"),
        pytest.param("a@-bad.example", id="bad-label"),
        pytest.param("a@1.2.3.4", id="ip-literal"),
        pytest.param('"quoted local"@example.com', id="quoted-local"),
        pytest.param("a@example.com\r\nBcc: x@evil.example", id="crlf"),
        pytest.param("Evil\nName <a@example.com>", id="lf-in-name"),
        pytest.param("ünïcode@example.com", id="utf8-local"),
        pytest.param("a@" + "x" * 64 + ".example", id="long-label"),
        # A-labels that decode to no valid U-label, and the hyphens IDNA reserves.
        pytest.param("a@xn--zz.com", id="a-label-not-punycode"),
        pytest.param("a@xn--a.com", id="a-label-decodes-to-a-control"),
        pytest.param("a@XN--ZZ.example.com", id="a-label-upper-case"),
        pytest.param("a@ab--cd.com", id="reserved-hyphens"),
        pytest.param("a@bücher.xn--zz", id="a-label-beside-a-u-label"),
        # Postfix would deliver these to victim@victim.example (its percent hack and
        # bang paths), past the suppression list and the limits of that address.
        pytest.param("victim%victim.example@mx.example.com", id="percent-hack"),
        pytest.param("victim.example!victim@mx.example.com", id="bang-path"),
    ],
)
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(AddressError):
        parse_mailbox(text)


@pytest.mark.parametrize(
    ("field", "text", "code"),
    [("to", "a@xn--zz.com", "invalid_recipient"), ("from", "a@xn--a.com", "invalid_field")],
)
def test_an_invalid_a_label_is_a_field_error(field: str, text: str, code: str) -> None:
    error = refusal(**{field: text})
    assert (error.status, error.code) == (422, code)


@pytest.mark.parametrize(
    ("field", "text", "code"),
    [
        ("to", ['"john doe"@example.org'], "invalid_recipient"),
        ("from", 'App <"app"@example.com>', "invalid_field"),
        ("reply_to", ['john."doe"@example.org'], "invalid_field"),
    ],
)
def test_a_quoted_local_part_is_refused_as_quoted(field: str, text: Any, code: str) -> None:
    """It is plain ASCII: the message says what is refused."""
    error = refusal(**{field: text})
    assert (error.status, error.code) == (422, code)
    assert [d["code"] for d in error.details] == [code]
    assert error.details[0]["message"].startswith("quoted local parts (")


def test_a_local_part_too_long_is_refused_as_too_long() -> None:
    """It is plain ASCII too: the message names the limit."""
    error = refusal(to=["a" * 65 + "@example.com"])
    assert (error.status, error.code) == (422, "invalid_recipient")
    assert error.details[0]["message"].endswith("the local part is longer than 64 characters")
    assert parse(to=["a" * 64 + "@example.com"]).to[0].address == "a" * 64 + "@example.com"


@pytest.mark.parametrize(
    ("text", "name"),
    [
        pytest.param(r'"Doe \"JJ\" John" <a@example.com>', 'Doe "JJ" John', id="escaped-quotes"),
        pytest.param(r'"back\\slash" <a@example.com>', "back\\slash", id="escaped-backslash"),
        pytest.param(r'"\a\b" <a@example.com>', "ab", id="any-escaped-character"),
        pytest.param('Doe "JJ" John <a@example.com>', 'Doe "JJ" John', id="not-quoted"),
    ],
)
def test_a_quoted_display_name_is_unquoted(text: str, name: str) -> None:
    assert parse_mailbox(text).display_name == name


@pytest.mark.parametrize(
    ("patterns", "allowed"),
    [
        pytest.param(("app@example.com",), True, id="exact"),
        pytest.param(("APP@Example.COM",), True, id="case-insensitive"),
        pytest.param(("*@example.com",), True, id="domain"),
        pytest.param(("*@other.example",), False, id="other-domain"),
        pytest.param(("*@sub.example.com",), False, id="subdomain-is-not-domain"),
        pytest.param(("*@example.com.",), True, id="root-dot"),
        pytest.param(("app@example.com.",), True, id="address-root-dot"),
        pytest.param(("*@example.com..",), False, id="two-dots"),
        pytest.param(("*@sub.example.com.",), False, id="subdomain-root-dot"),
        pytest.param(("other@example.com",), False, id="other-local"),
        pytest.param((), False, id="empty"),
    ],
)
def test_sender_patterns(patterns: tuple[str, ...], allowed: bool) -> None:
    assert sender_matches(parse_mailbox("app@example.com"), patterns) is allowed


def test_a_root_dot_is_taken_in_every_address_field_as_the_same_domain() -> None:
    # It was refused as "domain must be a fully qualified name", which it is.
    request = parse(**{"from": "App <app@example.com.>", "to": "a@example.org.",
                       "cc": ["b@example.org."], "bcc": "c@example.org.",
                       "reply_to": "r@example.org."})
    fields = (request.sender, *request.to, *request.cc, *request.bcc, *request.reply_to)
    assert [m.address for m in fields] == [
        "app@example.com", "a@example.org", "b@example.org", "c@example.org", "r@example.org"]


@pytest.mark.parametrize(
    ("sender", "pattern", "allowed"),
    [
        pytest.param("app@example.com.", "*@example.com", True, id="sender-root-dot"),
        pytest.param("app@example.com.", "*@example.com.", True, id="both-root-dot"),
        pytest.param("app@evil.example.", "*@example.com", False, id="other-domain-root-dot"),
        pytest.param("app@sub.example.com.", "*@example.com", False, id="subdomain-root-dot"),
    ],
)
def test_a_root_dot_neither_passes_nor_fails_an_allowed_sender_rule(
        sender: str, pattern: str, allowed: bool) -> None:
    def rule(mailbox: Mailbox) -> bool:
        return sender_matches(mailbox, (pattern,))
    body = {**BASE, "from": sender}
    if allowed:
        assert parse_request(body, CAPS, rule).sender.address == sender.removesuffix(".")
        return
    with pytest.raises(ApiError) as caught:
        parse_request(body, CAPS, rule)
    assert caught.value.code == "sender_not_allowed"


def test_a_second_root_dot_is_named_as_what_is_wrong() -> None:
    error = refusal(to="a@example.org..")
    assert error.details[0]["message"] == "domain is not a valid host name"


def test_idn_sender_pattern_matches_its_punycode() -> None:
    assert sender_matches(parse_mailbox("a@xn--bcher-kva.example"), ("*@bücher.example",))


def test_mask_hides_the_local_part() -> None:
    assert mask("alice@example.org") == "a***@example.org"


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        pytest.param({"to": ["not an address"]}, "to[0]", "invalid_recipient", id="bad-to"),
        pytest.param({"to": [], "cc": None}, "to", "invalid_recipient", id="no-recipient"),
        pytest.param({"to": [f"u{n}@example.org" for n in range(6)]}, "to",
                     "too_many_recipients", id="too-many"),
        pytest.param({"subject": ""}, "subject", "invalid_subject", id="empty-subject"),
        pytest.param({"subject": "x" * 999}, "subject", "invalid_subject", id="long-subject"),
        pytest.param({"subject": "a\r\nBcc: x@evil.example"}, "subject", "invalid_subject",
                     id="crlf-subject"),
        pytest.param({"subject": "tab\there"}, "subject", "invalid_subject", id="control"),
        pytest.param({"text": None}, "text", "empty_body", id="no-body"),
        pytest.param({"text": "", "html": ""}, "text", "empty_body", id="empty-body"),
        pytest.param({"text": " \r\n\t"}, "text", "empty_body", id="blank-text"),
        pytest.param({"text": None, "html": "\n "}, "text", "empty_body", id="blank-html"),
        pytest.param({"text": "  ", "html": "\n"}, "text", "empty_body", id="blank-both"),
        pytest.param({"text": "x" * 10_001}, "text", "body_too_large", id="big-text"),
        pytest.param({"headers": {"Bcc": "x@evil.example"}}, "headers.Bcc", "invalid_header",
                     id="reserved-bcc"),
        pytest.param({"headers": {"DKIM-Signature": "v=1"}}, "headers.DKIM-Signature",
                     "invalid_header", id="reserved-dkim"),
        pytest.param({"headers": {"Received": "from x"}}, "headers.Received", "invalid_header",
                     id="reserved-received"),
        pytest.param({"headers": {"X-Postwarden-Id": "forged"}}, "headers.X-Postwarden-Id",
                     "invalid_header", id="reserved-ours"),
        pytest.param({"headers": {"X-Ok": "a\r\nBcc: x@evil.example"}}, "headers.X-Ok",
                     "invalid_header", id="crlf-header-value"),
        pytest.param({"headers": {"X-Ok\r\nBcc": "x"}}, "headers", "invalid_header",
                     id="crlf-header-name"),
        pytest.param({"reply_to": ["a@example.com\nBcc: x@evil.example"]}, "reply_to[0]",
                     "invalid_field", id="crlf-reply-to"),
        pytest.param({"from": "app@example.com\r\nBcc: x@evil.example"}, "from",
                     "invalid_field", id="crlf-from"),
        pytest.param(attached("a\r\nb.txt", "text/plain", b"x"),
                     "attachments[0].filename", "invalid_field", id="crlf-filename"),
        pytest.param(attached("a.txt", "text/plain\r\nX: y", b"x"),
                     "attachments[0].content_type", "invalid_field", id="crlf-content-type"),
        pytest.param(attached("run.exe", "text/plain", b"hello"),
                     "attachments[0]", "attachment_not_allowed", id="exe-name"),
        pytest.param(attached("a.pdf", "application/pdf; charset=utf-8", b"%PDF-1.4"),
                     "attachments[0].content_type", "invalid_field", id="charset-not-text"),
        pytest.param(attached("a.txt", "text/plain; charset=utf-7", b"x"),
                     "attachments[0].content_type", "invalid_field", id="charset-unshared"),
        pytest.param(attached("a.txt", "text/plain; charset=utf-8", b"\xff"),
                     "attachments[0].content_type", "invalid_field", id="charset-not-content"),
        # A byte the charset leaves unassigned: U+FFFD to readers and the milter alike.
        pytest.param(attached("a.txt", "text/plain; charset=iso-8859-3", b"\xa5"),
                     "attachments[0].content_type", "invalid_field", id="charset-unassigned"),
        # A UTF-16 label only some readers know: the others read it ASCII-based.
        pytest.param(attached("a.txt", "text/plain; charset=unicode", "hi".encode("utf-16-le")),
                     "attachments[0].content_type", "invalid_field", id="charset-unicode"),
        pytest.param(attached("..", "text/plain", b"x"),
                     "attachments[0].filename", "invalid_field", id="dots-only-filename"),
        pytest.param(attached(". \u3000.", "text/plain", b"x"),
                     "attachments[0].filename", "invalid_field", id="dots-and-blanks-filename"),
        pytest.param(attached("a.txt", "text/plain; name=b.exe", b"x"),
                     "attachments[0].content_type", "invalid_field", id="other-parameter"),
        pytest.param(attached("a.pdf", "application/pdf; method=REQUEST", b"%PDF-1.4"),
                     "attachments[0].content_type", "invalid_field", id="method-not-calendar"),
        pytest.param(attached("a.ics", "text/calendar; method=SOON", b"BEGIN:VCALENDAR"),
                     "attachments[0].content_type", "invalid_field", id="method-unknown"),
        pytest.param(attached("a.ics", "text/calendar; method=REQUEST; method=CANCEL",
                              b"BEGIN:VCALENDAR"),
                     "attachments[0].content_type", "invalid_field", id="method-twice"),
        pytest.param(attached("a.txt", "text/plain;\ncharset=utf-8", b"x"),
                     "attachments[0].content_type", "invalid_field", id="break-before-charset"),
        pytest.param(attached("a.txt", "text/plain;", b"x"),
                     "attachments[0].content_type", "invalid_field", id="no-parameter"),
        pytest.param(attached("report.pdf", "application/pdf", b"MZ\x90\x00rest"),
                     "attachments[0]", "attachment_not_allowed", id="exe-content"),
        pytest.param(attached("a.txt", "text/plain", raw="%%%"),
                     "attachments[0].content", "invalid_field", id="bad-base64"),
        pytest.param(attached("a.bin", "application/octet-stream", b"x" * 1_001),
                     "attachments[0]", "message_too_large", id="big-attachment"),
        pytest.param({"tags": ["ok", "bad tag"]}, "tags[1]", "invalid_field", id="bad-tag"),
        pytest.param({"metadata": {"k": "v" * 3000}}, "metadata", "invalid_field",
                     id="big-metadata"),
        pytest.param({"metadata": {"k": {"nested": 1}}}, "metadata", "invalid_field",
                     id="nested-metadata"),
        pytest.param({"metadata": {"k": "nul\x00"}}, "metadata", "invalid_field",
                     id="nul-in-metadata"),
        pytest.param({"metadata": {"k": float("nan")}}, "metadata", "invalid_field",
                     id="nan-in-metadata"),
        pytest.param({"metadata": {"k": float("inf")}}, "metadata", "invalid_field",
                     id="infinite-metadata"),
        # RFC 2047 encoded words: the email package would decode them into the header.
        pytest.param({"from": f"{ENCODED_MAILBOX} <app@example.com>"}, "from", "invalid_field",
                     id="encoded-display-name"),
        pytest.param({"from": f"{ENCODED_MAILBOX}@example.com"}, "from", "invalid_field",
                     id="encoded-local-part"),
        pytest.param({"to": [f"{ENCODED_MAILBOX} <bob@example.org>"]}, "to[0]",
                     "invalid_recipient", id="encoded-recipient-name"),
        pytest.param({"subject": "=?utf-8?q?hello=0D=0ABcc:_x@evil.example?="}, "subject",
                     "invalid_subject", id="encoded-subject"),
        # Spaces in the encoded text: against RFC 2047, decoded by the email package.
        pytest.param({"from": "=?utf-8?q?CEO <ceo@example.com>, Billing?= <app@example.com>"},
                     "from", "invalid_field", id="encoded-name-with-spaces"),
        pytest.param({"subject": "=?utf-8?q?urgent wire transfer?="}, "subject",
                     "invalid_subject", id="encoded-subject-with-spaces"),
        pytest.param({"headers": {"X-Ok": "=?utf-8?B?YQ0KQmNjOiB4?="}}, "headers.X-Ok",
                     "invalid_header", id="encoded-header-value"),
        pytest.param(attached("=?utf-8?q?invoice.exe?=", "text/plain", b"x"),
                     "attachments[0].filename", "invalid_field", id="encoded-filename"),
        # An empty charset, or one with a space: the email package decodes those too
        # (as ASCII), so they must not carry a name, a CRLF or a control character.
        pytest.param(attached("=??q?invoice.exe?=", "application/pdf", b"x"),
                     "attachments[0].filename", "invalid_field", id="empty-charset-filename"),
        pytest.param(attached("=??q?a.pdf=0D=0AX-Injected:=201?=", "application/pdf", b"x"),
                     "attachments[0].filename", "invalid_field", id="empty-charset-crlf-filename"),
        pytest.param({"subject": "=??q?=0D=0AX-Evil:=201?="}, "subject", "invalid_subject",
                     id="empty-charset-subject"),
        pytest.param({"subject": "=??q?a=00b=0Bc?="}, "subject", "invalid_subject",
                     id="empty-charset-control-characters"),
        pytest.param({"headers": {"X-Ok": "=?a b?q?=0D=0AX-Evil:=201?="}}, "headers.X-Ok",
                     "invalid_header", id="spaced-charset-header-value"),
        pytest.param({"to": ["=??q?=0D=0AX-Evil:=201?= <bob@example.org>"]}, "to[0]",
                     "invalid_recipient", id="empty-charset-recipient-name"),
        pytest.param({"from": "=??q?Support_=3Cceo@bank.example=3E?= <app@example.com>"},
                     "from", "invalid_field", id="empty-charset-display-name"),
        # Escaped in a quoted name: undoing the escapes joins "=\?" into "=?".
        pytest.param({"from": '"=\\?utf-8\\?q\\?Bob=0D=0ABcc:_x@evil.test\\?=" <app@example.com>'},
                     "from", "invalid_field", id="escaped-encoded-display-name"),
        pytest.param({"to": ['"=\\?utf-8\\?q\\?a=00b=1Bc\\?=" <bob@example.org>']}, "to[0]",
                     "invalid_recipient", id="escaped-encoded-recipient-name"),
        # A bidi override shows the letters after it reversed: "invoicetxt.pdf".
        pytest.param(attached("invoice\u202efdp.txt", "text/plain", b"x"),
                     "attachments[0].filename", "invalid_field", id="bidi-override-filename"),
        pytest.param(attached("a\u202db.txt", "text/plain", b"x"),
                     "attachments[0].filename", "invalid_field", id="bidi-ltr-override-filename"),
        pytest.param(attached("invoice.exe. ", "text/plain", b"x"),
                     "attachments[0]", "attachment_not_allowed", id="exe-trailing-dot-space"),
        pytest.param(attached("disk.img", "text/plain", b"x"),
                     "attachments[0]", "attachment_not_allowed", id="img-name"),
        pytest.param(attached("fwd.eml", "message/rfc822", b"From: a@b.example\r\n\r\nhi\r\n"),
                     "attachments[0]", "attachment_not_allowed", id="message-as-attachment"),
        pytest.param(attached("parts", "multipart/mixed", b"x"),
                     "attachments[0]", "attachment_not_allowed", id="multipart-as-attachment"),
        pytest.param(attached("tool", "application/pdf", b"\xfe\xed\xfa\xcf" + bytes(8)),
                     "attachments[0]", "attachment_not_allowed", id="big-endian-mach-o"),
        pytest.param(attached("portal.url", "text/plain", b"[InternetShortcut]\r\n"),
                     "attachments[0]", "attachment_not_allowed", id="internet-shortcut"),
        pytest.param(attached("a.txt", "application/x-javascript", b"x"),
                     "attachments[0]", "attachment_not_allowed", id="legacy-javascript-type"),
        pytest.param({"text": "\ud800"}, "text", "invalid_field", id="lone-surrogate"),
        pytest.param({"surprise": 1}, "surprise", "invalid_field", id="unknown-field"),
    ],
)
def test_each_problem_has_its_code(changes: dict[str, Any], field: str, code: str) -> None:
    error = refusal(**changes)
    assert {"field": field, "code": code} in [
        {"field": d["field"], "code": d["code"]} for d in error.details
    ], error.details


@pytest.mark.parametrize(("charset", "text", "content"), [
    # WHATWG labels Python does not know, which Outlook writes (Thai, Japanese).
    ("windows-874", "สวัสดี", "สวัสดี".encode("cp874")),
    ("x-sjis", "日本", "日本".encode("cp932")),
    ("x-mac-roman", "•", b"\xa5"),
    # Text in the superset readers decode the label by: Windows' quotes in "us-ascii",
    # NEC's circled digits in Shift_JIS (and EUC-JP, ISO-2022-JP), UHC syllables in
    # EUC-KR (and ks_c_5601-1987, Korean Outlook's), GBK's characters in GB2312.
    ("us-ascii", "“hi”", b"\x93hi\x94"),
    ("shift_jis", "①㈱", "①㈱".encode("cp932")),
    ("euc-jp", "①", b"\xad\xa1"),
    ("iso-2022-jp", "①", b"\x1b$B-!\x1b(B"),
    ("euc-kr", "똠방", "똠방".encode("cp949")),
    ("ks_c_5601-1987", "똠", "똠".encode("cp949")),
    ("gb2312", "镕", "镕".encode("gbk")),
])
def test_a_text_attachment_readers_and_the_milter_read_alike_is_taken(
    charset: str, text: str, content: bytes
) -> None:
    """Checked with Python's codec for the label, these were refused 422: 'charset
    windows-874 is not one mail readers decode as we do', 'the content is not shift_jis
    text', though readers show the text, and the milter's rules read it as they do."""
    (attachment,) = parse(**attached("a.txt", f"text/plain; charset={charset}",
                                     content)).attachments
    assert attachment.charset == charset
    assert decode_as_readers(content, charset, set()) == text


@pytest.mark.parametrize("charset", ["iso-2022-jp", "ISO-2022-JP", "csiso2022jp"])
def test_a_text_attachment_readers_read_otherwise_is_refused(charset: str) -> None:
    # Two-byte mode holding a line end: Python reads "亜亜", WHATWG's decoder (mail
    # readers') an error and what follows otherwise. The milter flags such a text part
    # unshared_charset, as it flags a text body; the API took it, checked by the codec.
    content = b"\x1b$B0!0!\r\n\x1b(B"
    file = Attachment("a.txt", "text/plain", content, charset.lower())
    request = dataclasses.replace(parse(), attachments=(file,))
    message = build_message(request, "<jis@example.com>", dt.datetime.now(dt.UTC))
    assert "unshared_charset" in parse_message(message, Envelope()).flags
    error = refusal(**attached("a.txt", f"text/plain; charset={charset}", content))
    assert [(d["field"], d["message"]) for d in error.details] == [(
        "attachments[0].content_type",
        f"mail readers do not read the content as {charset.lower()} text as we do")]


def test_all_problems_are_listed_together_and_the_worst_decides() -> None:
    error = refusal(to=["bad"], subject="", text=None)
    codes = {d["code"] for d in error.details}
    assert codes == {"invalid_recipient", "invalid_subject", "empty_body"}
    assert (error.status, error.code) == (422, "invalid_recipient")
    with pytest.raises(ApiError) as caught:
        parse_request({**BASE, "subject": ""}, CAPS, lambda m: False)
    assert (caught.value.status, caught.value.code) == (403, "sender_not_allowed")
    assert {d["code"] for d in caught.value.details} == {"sender_not_allowed", "invalid_subject"}


@pytest.mark.parametrize(("changes", "field"), [
    ({"text": 5}, "text"), ({"text": None, "html": ["<p>hi</p>"]}, "html"),
])
def test_a_body_that_is_no_string_is_not_also_called_empty(
    changes: dict[str, Any], field: str
) -> None:
    # It was listed twice: "expected a string", and "text and html are empty".
    error = refusal(**changes)
    assert [(d["field"], d["message"]) for d in error.details] == [(field, "expected a string")]


@pytest.mark.parametrize(("text", "html", "kept"), [
    pytest.param("Hello", "\n", ("Hello", None), id="blank-html"),
    pytest.param(" \r\n", "<p>Hello</p>", (None, "<p>Hello</p>"), id="blank-text"),
])
def test_a_blank_body_beside_one_with_content_is_left_out(
    text: str, html: str, kept: tuple[str | None, str | None]
) -> None:
    # A template rendered to white space went out as an alternative of its own: a blank
    # html part is what most readers show, a blank text part what text-preferring ones
    # and previews show.
    request = parse(text=text, html=html)
    assert (request.text, request.html) == kept


def test_metadata_of_2_kib_as_a_client_writes_it_is_taken() -> None:
    # Measured with Python's ", " and ": " separators, 2 KiB of compact JSON (as
    # JSON.stringify and most encoders write it) over 80 keys counted 2,207 bytes.
    metadata = {f"k{index:02}": "v" * 13 for index in range(80)}
    compact = json.dumps(metadata, separators=(",", ":"))
    metadata["k00"] += "v" * (2048 - len(compact))
    assert len(json.dumps(metadata, separators=(",", ":"))) == 2048
    assert parse(metadata=metadata).metadata == metadata
    metadata["k00"] += "v"
    assert [d["field"] for d in refusal(metadata=metadata).details] == ["metadata"]


def test_an_attachment_s_unknown_key_is_named_with_its_other_problems() -> None:
    # It was one "expected filename, content_type, content" for the whole attachment:
    # which key was wrong went unsaid, and its bad base64 came only at the next try.
    item = {"filename": "a.txt", "content_type": "text/plain", "content": "a b",
            "disposition": "inline"}
    error = refusal(attachments=[item])
    assert [(d["field"], d["message"]) for d in error.details] == [
        ("attachments[0].disposition", "unknown field"),
        ("attachments[0].content", "not valid base64")]


def test_many_unknown_keys_are_named_twenty_at_most() -> None:
    # A send key's body of a million unknown keys (13 MB) was answered with a million
    # details (51 MB); an attachment's the same, twenty times over.
    many = {f"x{i:06d}": 0 for i in range(100_000)}
    item = {"filename": "a.txt", "content_type": "text/plain", "content": "", **many}
    error = refusal(attachments=[item], **many)
    fields = [(d["field"], d["message"]) for d in error.details]
    assert fields[:20] == [(f"x{i:06d}", "unknown field") for i in range(20)]
    assert fields[20] == ("body", "99980 more unknown fields")
    assert fields[21] == ("attachments[0].x000000", "unknown field")
    assert fields[41:] == [("attachments[0]", "99980 more unknown fields")]


def test_a_sender_header_must_be_allowed_too() -> None:
    with pytest.raises(ApiError) as caught:
        parse_request(
            {**BASE, "headers": {"Sender": "other@evil.example"}}, CAPS,
            lambda m: m.domain == "example.com",
        )
    assert caught.value.code == "sender_not_allowed"
    assert caught.value.details[0]["field"] == "headers.Sender"


@pytest.mark.parametrize("name", ["sender", "SENDER"])
def test_a_sender_header_is_named_as_given_whatever_its_problem(name: str) -> None:
    # Refused as malformed it was "headers.sender", as not allowed "headers.Sender".
    for value, code in [("nobody", "invalid_header"), ("x@evil.example", "sender_not_allowed")]:
        with pytest.raises(ApiError) as caught:
            parse_request({**BASE, "headers": {name: value}}, CAPS,
                          lambda m: m.domain == "example.com")
        assert [(d["field"], d["code"]) for d in caught.value.details] == [
            (f"headers.{name}", code)]


def test_a_malformed_sender_header_is_a_field_error() -> None:
    with pytest.raises(ApiError) as caught:
        parse_request({**BASE, "headers": {"Sender": "nobody"}}, CAPS, allow_all)
    assert (caught.value.status, caught.value.code) == (422, "invalid_header")
    assert caught.value.details[0]["field"] == "headers.Sender"


def test_the_body_must_be_an_object() -> None:
    with pytest.raises(ApiError) as caught:
        parse_request(["not", "an", "object"], CAPS, allow_all)
    assert caught.value.status == 422


def test_a_header_given_twice_in_two_cases_is_refused() -> None:
    headers = {"Sender": "app@example.com", "sender": "app@example.com"}
    with pytest.raises(ApiError) as caught:
        parse_request({**BASE, "headers": headers}, CAPS, allow_all)
    assert (caught.value.status, caught.value.code) == (422, "invalid_header")
    assert caught.value.details[0]["field"] == "headers.sender"


@pytest.mark.parametrize(("name", "value"), [
    ("List-Unsubscribe", "<mailto:unsubscribe@bücher.example>"),
    ("List-Post", "<https://bücher.example/post>"),
    ("In-Reply-To", "<1234@bücher.example>"),
    ("References", "<1@example.com> <2@bücher.example>"),
    ("List-Id", "Bücherfreunde <news.bücher.example>"),
])
def test_a_url_or_message_id_header_outside_ascii_is_refused(name: str, value: str) -> None:
    # RFC 2047 words are text, no URL or msg-id: encoded, a reader found no unsubscribe
    # link (one-click unsubscribe was lost) and no message to thread under.
    caught = refusal(headers={name: value})
    assert (caught.status, caught.code) == (422, "invalid_header")
    assert caught.details[0]["field"] == f"headers.{name}"
    assert "A-label" in caught.details[0]["message"]


def test_a_list_id_s_name_may_be_outside_ascii() -> None:
    assert parse(headers={"List-Id": "Bücherfreunde <news.example.com>"}).headers == (
        ("List-Id", "Bücherfreunde <news.example.com>"),
    )


def test_a_right_to_left_file_name_in_an_isolate_is_taken() -> None:
    # Embeddings and isolates show a right-to-left name as written: no override.
    name = "\u2067\u05d3\u05d5\u05d7\u2069 2026.pdf"
    [attachment] = parse(attachments=[{"filename": name, "content_type": "application/pdf",
                                       "content": b64(b"%PDF-1.4\n")}]).attachments
    assert attachment.filename == name


@pytest.mark.parametrize("name", [
    "payload.vbs\u00a0", "payload.vbs\u2003", "payload.vbs\u3000", "\u00a0payload.vbs",
    "=?utf-8?q?payload=2Evbs?=",
])
def test_a_blocked_name_is_read_as_the_milter_and_readers_read_it(name: str) -> None:
    """A name the header carries as given, which the milter (and Python's email package)
    read as payload.vbs: a client is not told 202 for what the milter refuses."""
    assert attachment_refusal(name, "text/plain", b"WScript.Echo 1") == (
        "files ending in .vbs are not allowed")


@pytest.mark.parametrize(("name", "extension"), [
    ("report.\u017fcr", "scr"), ("run.j\u017f", "js"), ("setup.\u0131nf", "inf"),
    ("link.ln\u212a", "lnk"),
])
def test_a_blocked_extension_in_other_letters_of_its_case_is_refused(
    name: str, extension: str
) -> None:
    """A long s upper-cases to S, a dotless i to I: the milter's *.scr glob (re2, in any
    case) matches report.\u017fcr, which the API answered 202."""
    assert attachment_refusal(name, "text/plain", b"x") == (
        f"files ending in .{extension} are not allowed")


def _uuencoded(name: str, data: bytes) -> str:
    lines = (binascii.b2a_uu(data[at : at + 45]).decode()  # 45 bytes a line at most
             for at in range(0, max(len(data), 1), 45))
    return f"begin 644 {name}\n{''.join(lines)}`\nend\n"


@pytest.mark.parametrize(("text", "reason"), [
    (_uuencoded("run.exe", b"hello"),
     "'run.exe' in this text: files ending in .exe are not allowed"),
    (_uuencoded("invoice.pdf", b"MZ\x90\x00" + b"\x00" * 40),
     "'invoice.pdf' in this text: the content is application/x-dosexec"),
    ("=ybegin line=128 size=5 name=run.bat\r\nhello\r\n=yend size=5\r\n",
     "'run.bat' in this text: files ending in .bat are not allowed"),
    # Shows as "invoiceexe.pdf"; a top-level name so is a field problem (below).
    (_uuencoded("invoice\u202efdp.exe.txt", b"hello"),
     "'invoice\\u202efdp.exe.txt' in this text: its name holds a bidi override, which shows "
     "its letters in another order"),
])
def test_a_file_uuencoded_in_the_text_is_checked_as_an_attachment(text: str, reason: str) -> None:
    """The milter (and Thunderbird) list it as an attachment of the text/plain part; in
    the text body after a bare CR too, which the build makes a line end."""
    assert refusal(text=f"Your file:\r{text}").details == [
        {"field": "text", "code": "attachment_not_allowed", "message": reason}]
    attachment = {"filename": "notes.txt", "content_type": "text/plain",
                  "content": b64(f"Your file:\n{text}".encode())}
    assert refusal(attachments=[attachment]).details == [
        {"field": "attachments[0]", "code": "attachment_not_allowed", "message": reason}]


def test_an_allowed_file_uuencoded_in_text_is_taken() -> None:
    text = "Your report:\n" + _uuencoded("report.pdf", b"%PDF-1.4\n")
    assert parse(text=text).text == text
    # Not text/plain: the milter does not read it as text, nor does a reader.
    parse(attachments=[{"filename": "notes.bin", "content_type": "application/octet-stream",
                        "content": b64(_uuencoded("run.exe", b"x").encode())}])


@pytest.mark.parametrize("text", [
    "To install, run:\nbegin 644 setup.exe\n",
    "begin 644 notes.exe",
    "Steps:\r\nbegin 644 notes.exe\r\n\r\n \r\n`\r\nend\r\nThanks\r\n",
])
def test_a_begin_line_with_no_line_after_it_that_decodes_is_text(text: str) -> None:
    """Thunderbird makes a file of the lines after a begin line: with none that decodes
    to a byte there is no file, and the milter lists none (this text was refused)."""
    request = parse(text=text)
    assert request.text == text
    message = build_message(request, "<prose@example.com>", dt.datetime.now(dt.UTC))
    assert parse_message(message, Envelope()).attachments == ()


@pytest.mark.parametrize("text", [
    _uuencoded("run.exe", b"hello").removesuffix("`\nend\n"),  # cut off before its end
    "begin 644 run.exe\n\nthanks\n",  # prose lines decode too, as Thunderbird reads them
])
def test_a_begin_line_with_a_line_after_it_that_decodes_is_a_file(text: str) -> None:
    assert refusal(text=text).details == [
        {"field": "text", "code": "attachment_not_allowed",
         "message": "'run.exe' in this text: files ending in .exe are not allowed"}]


def test_a_disk_image_is_refused_by_its_content() -> None:
    image = b"\x00" * 0x8000 + b"\x01CD001\x01" + b"\x00" * 100
    assert attachment_refusal("photos.zip", "application/zip", image) == (
        "the content is a disk image")
    assert attachment_refusal("photos.zip", "application/zip", image[:0x8001]) is None
    # Uuencoded in the text, under a harmless name: by the same mark.
    assert text_refusal(_uuencoded("notes.txt", image).encode()) == (
        "'notes.txt' in this text: the content is a disk image")
    yencoded = image.translate(bytes((byte + 42) % 256 for byte in range(256)))  # no escapes
    assert text_refusal(
        b"=ybegin line=128 size=32875 name=notes.txt\n" + yencoded + b"\n=yend\n") == (
        "'notes.txt' in this text: the content is a disk image")


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("notes.txt", bytes(0x8000) + b"\x01CD001\x01" + bytes(2041), "a disk image"),
    ("notes.txt", bytes(4096) + b"conectix" + bytes(504), "a virtual disk"),
    ("invoice.pdf", b"MZ\x90\x00" + bytes(200), "application/x-dosexec"),
], ids=["iso", "fixed-vhd", "exe"])
def test_lines_a_uuencoded_file_decodes_to_nothing_do_not_hide_its_content(
    name: str, data: bytes, reason: str
) -> None:
    # Thunderbird skips empty lines and decodes those whose count says none to no byte:
    # after the begin line and before the end line they hid the head and the marks.
    begin, _, rest = _uuencoded(name, data).partition("\n")
    skipped = "\n \n`\n" * 20
    text = begin + "\n" + skipped + rest.removesuffix("end\n") + skipped + "end\n"
    assert text_refusal(text.encode()) == f"'{name}' in this text: the content is {reason}"


def test_a_double_spaced_uuencoded_disk_image_is_refused_by_its_content() -> None:
    # The line with its mark is found run by run of lines alike: the empty line after
    # each hid it.
    text = _uuencoded("notes.txt", bytes(0x8000) + b"\x01CD001\x01").replace("\n", "\n\n")
    assert text_refusal(text.encode()) == "'notes.txt' in this text: the content is a disk image"


def test_binhex_reads_past_a_messages_budget_are_refused() -> None:
    # As the milter, which flags such a message malformed: the disk image after decoys
    # that spend the reads is not read, so the text is refused as unchecked.
    decoy = binhex.binhex_block(b"\x01" + b"\x90\x01" * 5_000)  # its head: 4,096 0x90s
    image = binhex.binhexed(b"notes.txt", b"\x00" * 0x8000 + b"\x01CD001\x01")
    decoys = uuencode.Budget().runs // 4096
    assert text_refusal((decoy + b"x\n") * (decoys - 1) + image) == (
        "'notes.txt' in this text: the content is a disk image")
    assert text_refusal((decoy + b"x\n") * decoys + image) == (
        attachments.UNREAD_BINHEX)


def test_binhex_reads_of_the_text_count_its_line_ends_as_the_milter_reads_them() -> None:
    # The text goes out in CRLF lines, as the milter reads it: its reads, counted in
    # LF lines, cost the API a 66th less than the milter, which flagged the message
    # unscanned_text (malformed) that the API had accepted.
    files = (binhex.binhexed(b"notes.txt", b"A" * 730_000) + b"x\r\n") * 8
    text = files.decode()
    caps = Caps(max_recipients=5, max_message_bytes=10_000_000, max_attachment_bytes=1_000)
    request = dataclasses.replace(parse(), text=text)
    message = build_message(request, "<crlf@example.com>", dt.datetime.now(dt.UTC))
    assert "unscanned_text" in parse_message(message, Envelope()).flags
    with pytest.raises(ApiError) as caught:
        parse_request({**BASE, "text": text.replace("\r\n", "\n")}, caps, allow_all)
    assert [(d["field"], d["message"]) for d in caught.value.details] == [
        ("text", attachments.UNREAD_BINHEX)]


# Carriers of current phishing, by name: OneNote (2023 on), app installers, search and
# library shortcuts, troubleshooting packs, Java Web Start.
@pytest.mark.parametrize("filename", [
    "invoice.one", "notes.onepkg", "update.appinstaller", "app.msixbundle", "app.appxbundle",
    "fix.diagcab", "shared.library-ms", "files.search-ms", "files.searchConnector-ms",
    "launch.jnlp",
])
def test_files_abused_in_phishing_are_refused_by_name(filename: str) -> None:
    extension = filename.split(".", 1)[1].lower()
    assert attachment_refusal(filename, "application/octet-stream", b"x") == (
        f"files ending in .{extension} are not allowed")


ONENOTE = bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3") + bytes(200)


@pytest.mark.parametrize(("content", "what"), [
    pytest.param(ONENOTE, "a OneNote file", id="onenote"),
    pytest.param(b"vhdxfile" + bytes(600), "a virtual disk", id="vhdx"),
    pytest.param(b"conectix" + bytes(600), "a virtual disk", id="vhd-dynamic"),
    pytest.param(bytes(4096) + b"conectix" + bytes(504), "a virtual disk", id="vhd-fixed"),
    pytest.param(b"ITSF\x03\x00\x00\x00" + bytes(100), "compiled HTML help", id="chm"),
])
def test_files_abused_in_phishing_are_refused_by_their_content(content: bytes,
                                                               what: str) -> None:
    assert attachment_refusal("report.pdf", "application/pdf", content) == (
        f"the content is {what}")
    # Uuencoded in text, read as the milter reads it (a fixed VHD's footer too).
    assert text_refusal(_uuencoded("report.pdf", content).encode()) == (
        f"'report.pdf' in this text: the content is {what}")
    # The marks at their places only: elsewhere they are a file's bytes like any.
    assert attachment_refusal("report.pdf", "application/pdf",
                              b"%PDF-1.4\n" + content + b"\n") is None


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        pytest.param({"from": '"ceo@example.com" <app@example.com>'}, "from", "invalid_field",
                     id="from"),
        pytest.param({"from": "ceo＠example.com <app@example.com>"}, "from", "invalid_field",
                     id="fullwidth-at"),
        pytest.param({"headers": {"Sender": '"ceo@example.com" <app@example.com>'}},
                     "headers.Sender", "invalid_header", id="sender-header"),
        pytest.param({"reply_to": ['"CEO (ceo@example.com)" <collect@evil.example>']},
                     "reply_to[0]", "invalid_field", id="reply-to"),
        pytest.param({"from": '"ceo@bank" <app@example.com>'}, "from", "invalid_field",
                     id="no-address-of-ours"),
        pytest.param({"from": '"ceo\u200a@bank.com" <app@example.com>'}, "from",
                     "invalid_field", id="hair-space"),
        pytest.param({"from": '"ceo\u2009@\u2009bank.com" <app@example.com>'}, "from",
                     "invalid_field", id="thin-spaces"),
        pytest.param({"from": '"ceo\u00a0@bank.com" <app@example.com>'}, "from",
                     "invalid_field", id="no-break-space"),
        pytest.param({"reply_to": ['"\\"ceo\\"@bank.com" <collect@evil.example>']},
                     "reply_to[0]", "invalid_field", id="quoted-local-part"),
    ],
)
def test_a_display_name_showing_another_address_is_refused(
    changes: dict[str, Any], field: str, code: str
) -> None:
    error = refusal(**changes)
    assert [(d["field"], d["code"]) for d in error.details] == [(field, code)]
    assert "display name" in error.details[0]["message"]


@pytest.mark.parametrize("name", [
    "APP@example.com", "app@EXAMPLE.com.", "Jane @ Acme", "ACME (@acme on Mastodon)",
])
def test_a_display_name_may_hold_its_own_address_or_an_at_sign(name: str) -> None:
    request = parse(**{"from": f'"{name}" <app@example.com>'},
                    to=['"bob@example.org" <bob@example.org>'])
    assert request.sender.display_name == name


def test_its_own_address_with_a_unicode_domain_is_its_own() -> None:
    request = parse(**{"from": '"app@bücher.example" <app@xn--bcher-kva.example>'})
    assert request.sender.display_name == "app@bücher.example"


def test_a_tag_given_twice_is_refused_and_every_bad_tag_is_named() -> None:
    """["a", "a"] was stored twice and counted twice toward the 10 tags; tags are told
    apart by case, as the search matches them."""
    details = [(d["field"], d["message"]) for d in
               refusal(tags=["a", "A", "a", "bad tag", "A"]).details]
    assert details == [("tags[2]", "tags[0] has this tag too"),
                       ("tags[3]", "1 to 64 of A-Z a-z 0-9 _ . : - (case told apart)"),
                       ("tags[4]", "tags[1] has this tag too")]
    assert parse(tags=["a", "A"]).tags == ("a", "A")


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        pytest.param("", "empty: give the file's name", id="empty"),
        pytest.param(". .", "dots and blanks alone are no file name", id="dots"),
        pytest.param("a" * 256, "at most 255 characters", id="too-long"),
        pytest.param("a\tb.txt", "holds a control character", id="control"),
        pytest.param("=?utf-8?q?a.txt?=", "RFC 2047 encoded words are not accepted: send the "
                     "text itself", id="encoded-word"),
        pytest.param("dir/a.txt", 'holds /, \\ or ": give the file\'s name alone, without a '
                     "path or quotes", id="path"),
    ],
)
def test_a_bad_file_name_is_told_what_is_wrong_with_it(filename: str, message: str) -> None:
    """An empty file name was told "not a plain file name", as was every other fault."""
    details = refusal(**attached(filename, "text/plain", b"x")).details
    assert details == [{"field": "attachments[0].filename", "code": "invalid_field",
                        "message": message}]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(" ", "empty: give a value, or leave the header out", id="empty"),
        pytest.param("v" * 901, "at most 900 characters", id="too-long"),
        pytest.param("v\r\nBcc: x@example.org",
                     "holds a control character (a line break among them)", id="control"),
    ],
)
def test_a_bad_header_value_is_told_what_is_wrong_with_it(value: str, message: str) -> None:
    """Each was "empty, too long or has controls", leaving the client to guess."""
    details = refusal(headers={"X-Note": value}).details
    assert details == [{"field": "headers.X-Note", "code": "invalid_header",
                        "message": message}]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("<a@example.org> " * 501, "at most 8000 characters", id="too-long"),
        pytest.param("<a@example.org>" * 61, "at most 900 characters between spaces: "
                     "separate the message ids with spaces", id="ids-unspaced"),
    ],
)
def test_references_are_told_their_own_limits(value: str, message: str) -> None:
    details = refusal(headers={"References": value}).details
    assert details == [{"field": "headers.References", "code": "invalid_header",
                        "message": message}]


def test_message_ids_copied_folded_from_the_message_replied_to_are_unfolded() -> None:
    # Python's email package (its default compat32 policy) and others give a parsed
    # message's References with its folding: the reply was refused, "holds a control
    # character". Between message ids, any white space is the same separator.
    request = parse(headers={
        "References": "<a@example.org>\r\n\t<b@example.org>\n <c@example.org>",
        "in-reply-to": "\t<c@example.org>",
    })
    assert request.headers == (
        ("References", "<a@example.org> <b@example.org> <c@example.org>"),
        ("in-reply-to", "<c@example.org>"),
    )


@pytest.mark.parametrize("value", ["<a@example.org>\r\nBcc: x@example.org",
                                   "<a@example.org>\n\n <b@example.org>"])
def test_a_line_break_that_folds_nothing_is_still_refused_in_message_ids(value: str) -> None:
    details = refusal(headers={"References": value}).details
    assert details == [{"field": "headers.References", "code": "invalid_header",
                        "message": "holds a control character (a line break among them)"}]


def test_an_x_header_name_may_hold_an_underscore() -> None:
    # RFC 5322 allows any printable ASCII but ":" in a field name; X-Campaign_Id was
    # refused as "not a valid header name".
    request = parse(headers={"X-Campaign_Id": "42"})
    message = build_message(request, "<u@example.com>", dt.datetime.now(dt.UTC))
    assert b"\r\nX-Campaign_Id: 42\r\n" in message


@pytest.mark.parametrize("name", ["X-Postwarden_Id", "X_Postwarden-Id"])
def test_our_header_prefix_written_with_an_underscore_is_reserved(name: str) -> None:
    assert refusal(headers={name: "forged"}).details == [{
        "field": f"headers.{name}", "code": "invalid_header",
        "message": "this header is reserved"}]


@pytest.mark.parametrize("name", ["to", "cc", "bcc", "reply_to"])
def test_a_lone_address_is_named_as_sent(name: str) -> None:
    # "to": "bad address" was refused on to[0], an index the client never sent.
    fields = [detail["field"] for detail in refusal(**{name: "bad address"}).details]
    listed = [detail["field"] for detail in refusal(**{name: ["bad address"]}).details]
    assert (fields, listed) == ([name], [f"{name}[0]"])


@pytest.mark.parametrize("text", ["", "  ", "<>", "Billing <>"])
def test_an_empty_address_is_told_it_is_empty(text: str) -> None:
    # A template's unset cc was told "expected local@domain with a plain ASCII local part".
    assert refusal(cc=text).details == [{"field": "cc", "code": "invalid_recipient",
                                         "message": "empty: give an address"}]


@pytest.mark.parametrize("text", ["bob@example.org;", "Bob <bob@example.org>, "])
def test_an_address_with_a_list_separator_after_it_is_told_so(text: str) -> None:
    # As Outlook writes a list ("a@x.org; b@x.org;"): told "domain is not a valid host
    # name", or "expected local@domain with a plain ASCII local part".
    assert refusal(to=text).details == [{
        "field": "to", "code": "invalid_recipient",
        "message": "ends with , or ;: give the address alone (several as a list)"}]


@pytest.mark.parametrize("text", ["bob@example.org (Bob Smith)", "bob(Sales)@example.org",
                                  "Bob <bob@example.org (work)>"])
def test_an_address_with_a_comment_is_told_to_give_the_name_otherwise(text: str) -> None:
    # RFC 5322's comments, as older software writes a name ("bob@example.org (Bob)"):
    # told "domain is not a valid host name", or of a bad local part.
    assert refusal(to=text).details == [{
        "field": "to", "code": "invalid_recipient",
        "message": "comments ((...)) are not accepted: write Name <local@domain>"}]


@pytest.mark.parametrize(("text", "message"), [
    ("N" * 201 + " <bob@example.org>", "display name is longer than 200 characters"),
    (f"{'b' * 64}@{'d' * 60}.{'e' * 60}.{'f' * 60}.{'g' * 60}.org",
     "address is longer than 254 characters"),
])
def test_a_name_or_address_too_long_is_told_its_limit(text: str, message: str) -> None:
    # "display name is too long" left a client to guess how long one may be.
    assert refusal(to=text).details == [{"field": "to", "code": "invalid_recipient",
                                          "message": message}]


@pytest.mark.parametrize("text", ["undisclosed-recipients:;", "Team: bob@example.org;",
                                  "Team: bob@example.org, ann@example.org;"])
def test_a_group_is_told_to_be_given_as_a_list(text: str) -> None:
    # RFC 5322's group syntax: told "ends with , or ;", "one address per string", or of
    # a bad local part.
    assert refusal(to=text).details == [{
        "field": "to", "code": "invalid_recipient",
        "message": "groups (Name: a@x.org, b@x.org;) are not accepted: give the addresses "
                   "as a list"}]


def test_recipients_over_the_limit_across_fields_are_told_that_all_fields_count() -> None:
    """Spread over cc and bcc, with none in to, they were refused as "to: at most N"."""
    many = {"to": [], "cc": [f"c{n}@example.org" for n in range(CAPS.max_recipients)],
            "bcc": ["b@example.org"]}
    assert refusal(**many).details == [{
        "field": "to", "code": "too_many_recipients",
        "message": f"at most {CAPS.max_recipients} different recipients in to, cc and bcc "
                   f"together ({CAPS.max_recipients + 1} given)"}]


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        pytest.param([], "expected an object", id="no-object"),
        pytest.param({"ok": 1, "order": {"id": 1}}, 'the value of "order" is a list or '
                     "object: give a string, number, boolean or null", id="nested"),
        pytest.param({"k\x00": 1}, 'the key "k\\u0000" holds a NUL character', id="nul-key"),
        pytest.param({"n": float("nan")}, 'the value of "n" holds a NUL character, or is no '
                     "finite number", id="nan"),
        pytest.param({"note": "x" * 3000}, "at most 2048 bytes as compact JSON in UTF-8 "
                     "(3011 given)", id="too-large"),
    ],
)
def test_bad_metadata_is_told_what_is_wrong_with_it(metadata: Any, message: str) -> None:
    """Each was "a flat object of at most 2 KiB (strings without NUL, finite numbers)"."""
    assert refusal(metadata=metadata).details == [
        {"field": "metadata", "code": "invalid_field", "message": message}]


def test_each_address_header_postfix_would_cut_is_named() -> None:
    # Past about 60,000 bytes Postfix (with a milter) drops the rest of the addresses
    # (tests/send_api/test_address_header_postfix.py): Cc and Reply-To as To.
    name = "\N{GRINNING FACE}" * 200
    many = [f"{name} <u{n}{'x' * 50}@example.org>" for n in range(50)]
    caps = dataclasses.replace(CAPS, max_recipients=50)
    body = {**BASE, "to": many, "cc": many, "reply_to": many}  # 50 different recipients
    request = parse_request(body, caps, allow_all)
    message = build_message(request, "<many@example.com>", dt.datetime.now(dt.UTC))
    with pytest.raises(ApiError) as caught:
        check_address_headers(message)
    assert [(d["field"], d["code"]) for d in caught.value.details] == [
        ("to", "header_too_large"), ("cc", "header_too_large"),
        ("reply_to", "header_too_large")]
