"""Building the message: headers we set and nothing else, bodies and attachments intact."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.header
import itertools
import random
import re
import string
from email import policy
from email.contentmanager import raw_data_manager
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from postwarden_admin_api.errors import ApiError
from postwarden_admin_api.send import build
from postwarden_admin_api.send.build import (
    AmbiguousAddresses,
    BuildError,
    _check_headers,
    _check_parts,
    build_message,
)
from postwarden_admin_api.send.request_model import Caps, parse_request
from postwarden_policies import Envelope, parse_message
from postwarden_policies.headers import decode_words

CAPS = Caps(max_recipients=50, max_message_bytes=1_000_000, max_attachment_bytes=100_000)
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
MESSAGE_ID = "<0123456789abcdef@example.com>"
_PLAIN = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*")


def built(**fields: Any) -> tuple[bytes, EmailMessage]:
    body = {"from": "App <app@example.com>", "to": "alice@example.org", "subject": "Hi",
            "text": "plain", **fields}
    data = build_message(parse_request(body, CAPS, lambda m: True), MESSAGE_ID, NOW)
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return data, parsed


def test_headers_are_ours_and_bcc_is_not_among_them() -> None:
    data, message = built(cc="Bob <bob@example.org>", bcc="hidden@example.org",
                          reply_to="help@example.com", headers={"X-Campaign": "spring"})
    assert message["Message-ID"] == MESSAGE_ID
    assert message["From"] == "App <app@example.com>"
    assert message["Cc"] == "Bob <bob@example.org>"
    assert message["Reply-To"] == "help@example.com"
    assert message["X-Campaign"] == "spring"
    assert message["Date"] == "Mon, 23 Nov 2026 12:00:00 +0000"
    assert b"hidden@example.org" not in data
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")


def test_unicode_everywhere_is_encoded_to_7bit() -> None:
    data, message = built(**{
        "from": "Jöhn <app@bücher.example>", "subject": "Grüße " + "ü" * 300,
        "text": "Zeile " + "é" * 2000, "html": "<p>ö</p>",
    })
    assert max(data) < 128
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert message["From"] == "Jöhn <app@xn--bcher-kva.example>"
    assert message["Subject"] == "Grüße " + "ü" * 300
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().rstrip("\r\n") == "Zeile " + "é" * 2000
    assert "<p>ö</p>" in html.get_content()


def test_a_dot_line_and_long_lines_survive() -> None:
    text = "first\n.\nlast " + "x" * 5000
    _, message = built(text=text)
    part = message.get_body(("plain",))
    assert part is not None
    assert part.get_content().replace("\r\n", "\n").rstrip("\n") == text


def test_attachments_keep_their_bytes_and_names() -> None:
    content = bytes(range(256)) * 10
    _, message = built(attachments=[{
        "filename": "Bericht über.pdf", "content_type": "application/pdf",
        "content": base64.b64encode(content).decode(),
    }])
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "Bericht über.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == content


LONG_ASCII_NAME = "Quarterly financial report for the board of directors, final version.pdf"


@pytest.mark.parametrize("filename", [
    pytest.param("r.pdf", id="short-ascii"),
    pytest.param(LONG_ASCII_NAME, id="long-ascii"),
    pytest.param("Bericht über.pdf", id="non-ascii"),
    pytest.param("報告書 für die Geschäftsführung über das Quartal 2026, endgültig.pdf",
                 id="long-non-ascii"),
])
def test_a_file_is_named_in_content_type_too_for_readers_without_rfc2231(
        filename: str) -> None:
    """Outlook reads no RFC 2231 (filename*0*=, as the email package writes a long or
    non-ASCII name) and showed such a file as ATT00001.bin: Content-Type's name= gives
    it too, as Thunderbird and Gmail write it (RFC 2047 words within the quotes)."""
    data, message = built(attachments=[{**ATTACHED[0], "filename": filename}])
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == filename
    legacy = email.message_from_bytes(data, policy=policy.compat32).get_payload()[1]
    name = legacy.get_param("name")
    assert isinstance(name, str)  # not RFC 2231 (get_param gives those as a tuple)
    assert str(email.header.make_header(email.header.decode_header(name))) == filename
    head = data[data.index(b"Content-Type: application/pdf"):].split(b"\r\n\r\n")[0]
    assert max(map(len, head.split(b"\r\n"))) <= (78 if not filename.isascii() else 998)
    facts = parse_message(data, Envelope())  # the milter: one name, no ambiguity
    assert [part.filenames for part in facts.attachments] == [(filename,)]
    assert "ambiguous_filename" not in facts.flags


def test_a_header_that_appears_from_nowhere_stops_the_build() -> None:
    data, message = built()
    injected = data.replace(b"Subject: Hi\r\n", b"Subject: Hi\r\nBcc: x@evil.example\r\n")
    with pytest.raises(BuildError):
        _check_headers(injected, [name.lower() for name in message])


def test_a_bare_line_break_in_the_head_stops_the_build() -> None:
    data, message = built()
    broken = data.replace(b"Subject: Hi\r\n", b"Subject: Hi\nBcc: x@evil.example\r\n")
    with pytest.raises(BuildError):
        _check_headers(broken, [name.lower() for name in message])


ATTACHED = [{"filename": "r.pdf", "content_type": "application/pdf",
             "content": base64.b64encode(b"%PDF-1.4").decode()}]
PDF_PART = b"Content-Type: application/pdf;\r\n"


@pytest.mark.parametrize(
    ("tamper"),
    [
        pytest.param(lambda d: d.replace(PDF_PART, PDF_PART + b"X-Injected: 1\r\n"), id="extra"),
        pytest.param(lambda d: d.replace(PDF_PART, PDF_PART + PDF_PART), id="repeated"),
        pytest.param(lambda d: d.replace(PDF_PART, b""), id="no-content-type"),
        pytest.param(lambda d: d.replace(PDF_PART, PDF_PART.replace(b"\r\n", b"\r\n\r\n")),
                     id="body-early"),
        pytest.param(lambda d: d.replace(b"\r\n\r\n--===", b"\r\n\r\n--===", 1).replace(
            b"--\r\n", b"\r\n", 1), id="not-closed"),
        pytest.param(lambda d: re.sub(
            rb"(\r\n--(=+\d+==)\r\n)", rb"\1Content-Type: text/plain\r\n\r\nx\1", d, count=1),
            id="extra-part"),
    ],
)
def test_a_part_that_was_not_built_stops_the_build(tamper: Any) -> None:
    data, message = built(attachments=ATTACHED, html="<p>hi</p>")
    _check_parts(data, message)
    tampered = tamper(data)
    assert tampered != data
    with pytest.raises(BuildError):
        _check_parts(tampered, message)


_WORD = st.text(string.ascii_letters + string.digits, min_size=1, max_size=12)
_NAME = st.one_of(st.just(""), st.lists(_WORD, min_size=1, max_size=4).map(" ".join),
                  st.text(string.printable.strip() + " ", max_size=30))
_ASCII = st.one_of(
    st.text("".join(map(chr, range(0x20, 0x7F))), min_size=1, max_size=90),
    # Pieces of what the registry treats specially: encoded words, comments, quotes.
    st.lists(st.sampled_from(["=?utf-8?q?hi?=", "=?iso-8859-1?q?caf=E9?=", "=?", "?=", "a",
                              " ", "  ", "(c)", '"q"', "<a@b>", ","]),
             min_size=1, max_size=8).map("".join),
)


@given(names=st.lists(_NAME, min_size=1, max_size=3), subject=_ASCII,
       campaign=_ASCII, reference=_ASCII)
@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_raw_headers_come_out_as_the_registry_writes_them(
    monkeypatch: pytest.MonkeyPatch, names: list[str], subject: str, campaign: str,
    reference: str,
) -> None:
    """The raw shortcut for plain values (build._plain) changes no byte of the result.
    (Longer printable ASCII is folded unencoded on purpose, build._folded_text: values
    that would reach it are left out here.)"""
    assume(all(len(value) <= 60 for value in (subject, campaign, reference)))
    to = [f'"{name}" <r{n}@example.org>' if name else f"r{n}@example.org"
          for n, name in enumerate(names)]
    body = {"from": f"{names[0]} <app@example.com>" if _PLAIN.fullmatch(names[0]) else
            "app@example.com", "to": to, "subject": subject, "text": "plain",
            "headers": {"X-Campaign": campaign, "In-Reply-To": reference}}
    try:
        request = parse_request(body, CAPS, lambda m: True)
    except ApiError:
        assume(False)  # not a valid request (a blank subject, say): nothing to build
        raise
    fast = build_message(request, MESSAGE_ID, NOW)
    with monkeypatch.context() as patched:
        patched.setattr(build, "_plain", lambda name, value: None)
        patched.setattr(build, "_set_text", lambda message, name, value:
                        message.__setitem__(name, value))  # the registry's way
        slow = build_message(request, MESSAGE_ID, NOW)
    assert fast == slow


# Bodies of every kind the content manager tells apart: short 7-bit lines, long
# lines (quoted-printable or base64), any Unicode, every line break, dots.
_BODY = st.lists(
    st.one_of(st.text(max_size=40), st.sampled_from(
        ["\r\n", "\n", "\r", ".", "\n.\n", "x" * 100, "é" * 80, "=?utf-8?q?a?=", " "])),
    max_size=12,
).map("".join)


@given(text=st.none() | _BODY, html=st.none() | _BODY, attached=st.booleans())
@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_text_parts_come_out_as_the_email_package_writes_them(
    monkeypatch: pytest.MonkeyPatch, text: str | None, html: str | None, attached: bool,
) -> None:
    """The unparsed content headers of text parts (build._set_text_content) change no
    byte of the result."""
    body = {"from": "app@example.com", "to": "r@example.org", "subject": "s", "text": text,
            "html": html, "attachments": ATTACHED if attached else None}
    try:
        request = parse_request({k: v for k, v in body.items() if v is not None}, CAPS,
                                lambda m: True)
    except ApiError:
        assume(False)  # not a valid request (no body at all, say): nothing to build
        raise
    random.seed(0)  # the same multipart boundaries both ways
    fast = build_message(request, MESSAGE_ID, NOW)
    with monkeypatch.context() as patched:
        patched.setattr(build, "POLICY", build.POLICY.clone(content_manager=raw_data_manager))
        random.seed(0)
        slow = build_message(request, MESSAGE_ID, NOW)
    assert fast == slow


# Long display names with what the email package's folding broke: it dropped the quotes
# (the first two read as other mailboxes), or wrote what no parser read back (500s).
HARD_NAMES = [
    "ceo@example.com," + "x" * 62, "ceo@example.com (" + "x" * 62,
    "Helpdesk: Ticket #12345; Priority: High; Assigned To someone-long-name@example.com",
    "Bcc:; " + "x" * 70, "@\u0130" + "x" * 50 + "?=",
]


@pytest.mark.parametrize("name", HARD_NAMES)
@pytest.mark.parametrize(
    ("field", "header"),
    [("from", "From"), ("to", "To"), ("cc", "Cc"), ("reply_to", "Reply-To")],
)
def test_a_long_display_name_with_specials_reads_back_as_written(
    name: str, field: str, header: str
) -> None:
    if field in ("from", "reply_to"):  # whose names may hold no other address
        name = name.replace("@", "[at]")
    data, message = built(**{field: f'"{name}" <app@example.com>'})
    assert [a.addr_spec for a in message[header].addresses] == ["app@example.com"]
    legacy = email.message_from_bytes(data, policy=policy.compat32)
    [(shown, address)] = email.utils.getaddresses([str(legacy[header])])
    assert address == "app@example.com"
    assert _as_readers_decode(shown) == name
    head = data.split(b"\r\n\r\n", 1)[0]
    # A quoted string is not folded inside (parseaddr misreads one that is): within
    # SMTP's 998; encoded words fold within 78.
    assert max(map(len, head.split(b"\r\n"))) <= (78 if not name.isascii() else 998)


def _as_readers_decode(phrase: str) -> str:
    """As RFC 2047 6.2 says, and mail readers do: the white space between two encoded
    words is no text (the email package's header registry keeps a space there)."""
    return str(email.header.make_header(email.header.decode_header(phrase)))


@pytest.mark.parametrize("name", ["Smith, John", "O'Brien", "Mary-Jane Doe", "Acme Inc.",
                                  'Doe "JJ" John', "a\\b"])
def test_a_printable_ascii_display_name_goes_out_quoted_not_encoded(name: str) -> None:
    # Spam filters score a 7-bit name sent base64-encoded (FROM_EXCESS_BASE64 and kin).
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    data, message = built(**{"from": f'"{quoted}" <app@example.com>'})
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"=?" not in head
    [address] = message["From"].addresses
    assert (address.display_name, address.addr_spec) == (name, "app@example.com")


def test_several_mailboxes_fold_between_them_and_read_back_in_order() -> None:
    to = [f'"{HARD_NAMES[2]}" <a@example.org>', "b@example.org", "Bob Smith <c@example.org>"]
    data, _ = built(to=to)
    legacy = email.message_from_bytes(data, policy=policy.compat32)
    read = email.utils.getaddresses([str(legacy["To"])])
    assert [(_as_readers_decode(name), address) for name, address in read] == [
        (HARD_NAMES[2], "a@example.org"), ("", "b@example.org"), ("Bob Smith", "c@example.org")]


@pytest.mark.parametrize("written", [
    "ceo@example.com, app@example.com",  # reads as two mailboxes
    "Helpdesk: Ticket; Assigned To\r\n someone@example.com <app@example.com>",  # parser raises
], ids=["other mailboxes", "unreadable"])
@pytest.mark.parametrize(("field", "header"), [("from", "From"), ("headers", "Sender")])
def test_a_header_that_does_not_read_back_is_refused(
    monkeypatch: pytest.MonkeyPatch, written: str, field: str, header: str
) -> None:
    # No value the service writes does this (above): the read-back still stands guard.
    monkeypatch.setattr(build, "_folded_mailboxes", lambda name, mailboxes: written)
    mailbox = "Ops: Team <app@example.com>"
    with pytest.raises(AmbiguousAddresses) as caught:
        built(**({field: {"Sender": mailbox}} if field == "headers" else {field: mailbox}))
    assert caught.value.header == header


def test_punctuation_in_a_short_display_name_is_quoted_and_reads_back() -> None:
    _, message = built(**{"from": "Smith, John (Ops) <app@example.com>",
                             "to": ["Doe, Jane <jane@example.org>", "bob@example.org"]})
    assert [a.addr_spec for a in message["From"].addresses] == ["app@example.com"]
    assert message["From"].addresses[0].display_name == "Smith, John (Ops)"
    assert email.utils.getaddresses([str(message["To"])]) == [
        ("Doe, Jane", "jane@example.org"), ("", "bob@example.org")]


def test_an_escaped_quote_in_a_quoted_display_name_reads_back_as_a_quote() -> None:
    _, message = built(**{"from": r'"Doe \"JJ\" John" <app@example.com>'})
    assert message["From"].addresses[0].display_name == 'Doe "JJ" John'


def test_a_long_msg_id_or_url_goes_out_folded_at_spaces_not_encoded() -> None:
    """An Outlook Message-ID is longer than a line, and so is many a List-Unsubscribe URL:
    encoded words (the registry's way with a word past 78 characters) are no msg-id or
    URL to a reader, so threading and unsubscribing broke."""
    reply_to = "<DM6PR11MB4331A0B1C2D3E4F5A6B7C8D9E0F1A2B3@DM6PR11MB4331.namprd11.prod.outlook.com>"
    url = "<https://example.com/unsubscribe?list=newsletter&token=" + "a1b2c3d4" * 10 + ">"
    references = " ".join(f"<{n}-{'x' * 40}@mail.example.com>" for n in range(4))
    subject = "A subject of plain words " * 5
    data, parsed = built(subject=subject.strip(), headers={
        "In-Reply-To": reply_to, "References": references, "List-Unsubscribe": url})
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"=?" not in head
    assert parsed["In-Reply-To"] == reply_to
    assert parsed["List-Unsubscribe"] == url
    assert parsed["References"] == references
    assert parsed["Subject"] == subject.strip()
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    folded = [line for line in head.split(b"\r\n") if line.startswith((b"References:", b" <"))]
    assert len(folded) == 4  # one reference a line: each past half a line


def test_an_equals_question_mark_that_starts_no_encoded_word_is_not_encoded() -> None:
    """A URL or msg-id holding "=?" (no encoded word: those are refused) went to the
    registry, which encoded it past a line's length: the unsubscribe link broke."""
    url = "<https://example.com/unsubscribe?list=news&t=?" + "a1b2c3d4" * 10 + ">"
    reply_to = "<DM6PR11MB4331=?A0B1C2D3E4F5A6B7C8D9E0F1A2B3@DM6PR11MB4331.prod.example.com>"
    subject = "Is 2+2=?b?q? " + "really " * 12
    data, parsed = built(subject=subject.strip(), headers={
        "List-Unsubscribe": url, "In-Reply-To": reply_to})
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"?=" not in head
    assert (parsed["List-Unsubscribe"], parsed["In-Reply-To"]) == (url, reply_to)
    assert parsed["Subject"] == subject.strip()


@pytest.mark.parametrize("value", [
    '日L@<IYj> / \u200bä<U=^tf;3 %` n\\XMé=f <8( {26*aCY日 q40c(\'$J,%eIfdU" \xa0]@',
    'F(dR,=]dj9LCy!Eq*ES%shk;V\\ 6"5\'? 9ZD\\)wE\\  9 aT`;/(:5z9,Z 5G@!,X]?L&(:-G_5ä',
    "Grüße  an   alle é " + "x" * 800, "é  ü ", "ab=?c é", "a ?=  é",
])
def test_text_outside_ascii_reads_back_with_its_spaces(value: str) -> None:
    """The email package's folding dropped the space at a fold between two encoded words
    ("<8( {26" read "<8({26"), doubled one, or wrote text right after an encoded word
    ("?=]@", which strict readers leave encoded): every reader, the milter's included,
    read another subject than the one sent. A "?=" before an encoded word: the
    milter, as lenient readers do, drops the spaces between them."""
    data, parsed = built(subject=value, headers={"X-Note": value})
    head = data.split(b"\r\n\r\n", 1)[0]
    assert re.search(rb"=\?[^?\s]+\?[bq]\?[^?\s]*\?=\S", head, re.I) is None  # ends a word
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    legacy = email.message_from_bytes(data, policy=policy.compat32)
    for name in ("Subject", "X-Note"):
        assert parsed[name] == value.lstrip()
        words = email.header.decode_header(legacy[name])
        assert str(email.header.make_header(words)) == value.lstrip()
        unfolded = legacy[name].replace("\r\n", "")
        assert decode_words(unfolded, set()).lstrip() == value.lstrip()


def test_a_word_too_long_for_a_line_even_alone_is_encoded() -> None:
    """Past 998 characters a line breaks SMTP: the registry's encoded words then."""
    data, parsed = built(subject="x" * 995)
    assert parsed["Subject"] == "x" * 995
    assert max(len(line) for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")) <= 998


def test_the_references_of_a_long_thread_go_out_folded_between_its_ids() -> None:
    """A reply's References is its parent's and the parent's id (RFC 5322 3.6.4), as long
    as the thread: past 900 characters (15 ids of 60) it was refused."""
    ids = [f"<{n:04}.{'x' * 40}@mail.example.org>" for n in range(60)]
    data, parsed = built(headers={"References": " ".join(ids)})
    assert str(parsed["References"]).split() == ids
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"=?" not in head
    assert max(len(line) for line in head.split(b"\r\n")) <= 78


def test_a_quoted_display_name_may_hold_angle_brackets() -> None:
    """RFC 5322 quotes them; the request was refused as a bad local part."""
    data, parsed = built(**{"from": '"ACME Inc. <Billing>" <app@example.com>',
                            "to": ['"Team <Ops>" <ops@example.org>']})
    assert parsed["From"].addresses[0].display_name == "ACME Inc. <Billing>"
    assert parsed["From"].addresses[0].addr_spec == "app@example.com"
    assert parsed["To"].addresses[0].display_name == "Team <Ops>"
    assert b'From: "ACME Inc. <Billing>" <app@example.com>' in data


@given(value=st.text("".join(map(chr, range(0x21, 0x7F))) + " ", min_size=70, max_size=900)
       .map(str.strip).filter(lambda v: len(v) > 70 and "=?" not in v))
@settings(max_examples=200, deadline=None, database=None)
def test_longer_printable_ascii_reads_back_as_given(value: str) -> None:
    """Folded at its spaces (none added, none lost), never encoded, no line past 998."""
    data, parsed = built(headers={"X-Campaign": value})
    head = data.split(b"\r\n\r\n", 1)[0]
    field = head[head.index(b"X-Campaign:"):].split(b"\r\n")
    lines = [field[0], *itertools.takewhile(lambda line: line.startswith(b" "), field[1:])]
    assert b"".join(lines)[len(b"X-Campaign: "):].decode() == value  # unfolded: CRLF out
    assert b"=?" not in b"".join(lines)
    assert max(len(line) for line in lines) <= 998
    assert parsed["X-Campaign"] == value  # as the email package reads it


@pytest.mark.parametrize("content_type", ['text/csv; charset=utf-8', 'TEXT/CSV;charset="UTF-8"'])
def test_a_text_attachment_carries_the_charset_given(content_type: str) -> None:
    """Without one, readers took a UTF-8 file for their default charset and showed it
    garbled; "text/plain; charset=utf-8" was refused as no type/subtype."""
    text = "Straße;Größe\nMüller;½\n"
    _, message = built(attachments=[{
        "filename": "liste.csv", "content_type": content_type,
        "content": base64.b64encode(text.encode()).decode(),
    }])
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_content_charset() == "utf-8"
    assert attachment.get_content() == text


@pytest.mark.parametrize("content_type", ["application/xml; charset=utf-8",
                                          "image/svg+xml; charset=UTF-8"])
def test_an_xml_attachment_carries_the_charset_given(content_type: str) -> None:
    """XML types define a charset parameter as text types do (RFC 7303): an e-invoice
    sent as "application/xml; charset=utf-8" was refused, 'a charset is a text type's
    parameter only'."""
    xml = '<?xml version="1.0"?><Invoice><Name>Müller</Name></Invoice>'
    _, message = built(attachments=[{
        "filename": "invoice.xml", "content_type": content_type,
        "content": base64.b64encode(xml.encode()).decode(),
    }])
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == content_type.partition(";")[0]
    assert attachment.get_content_charset() == "utf-8"
    assert attachment.get_content().decode() == xml


@pytest.mark.parametrize("content_type", ["text/calendar; method=REQUEST; charset=UTF-8",
                                          'TEXT/CALENDAR;CHARSET="utf-8"; Method="request"'])
def test_a_calendar_attachment_carries_its_method(content_type: str) -> None:
    """An invitation's method (RFC 5546), without which Outlook shows no Accept and
    Decline: "text/calendar; method=REQUEST" was refused, no type/subtype."""
    ics = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nSUMMARY:Réunion\r\nEND:VCALENDAR\r\n"
    _, message = built(attachments=[{
        "filename": "invite.ics", "content_type": content_type,
        "content": base64.b64encode(ics.encode()).decode(),
    }])
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "REQUEST"
    assert attachment.get_content_charset() == "utf-8"
    assert attachment.get_content() == ics


def test_only_the_message_itself_carries_mime_version() -> None:
    """RFC 2045 puts MIME-Version in the message's header: the email package added it to
    the html alternative and to every file part too."""
    pixel = base64.b64encode(b"GIF89a").decode()
    data, message = built(html='<img src="cid:logo@x">', attachments=[
        *ATTACHED,
        {"filename": "logo.gif", "content_type": "image/gif", "content": pixel,
         "content_id": "logo@x"}])
    assert data.count(b"MIME-Version:") == 1
    assert "mime-version" in build.header_names(data)
    assert [part.get_content_type() for part in message.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "multipart/related",
        "text/html", "image/gif", "application/pdf"]
