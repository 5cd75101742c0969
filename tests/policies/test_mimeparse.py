"""The byte-level MIME parser: offsets, sizes, addresses, and no exceptions ever."""

from __future__ import annotations

import base64
import binascii
import os
import random
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postwarden_policies import (
    Action,
    evaluate,
    load_policy_set_from_sources,
    magic,
    mimeflags,
    transfer,
    uuencode,
)
from postwarden_policies.facts import Envelope
from postwarden_policies.headers import MAX_FIELD_OCTETS, MAX_FIELDS
from postwarden_policies.mimeparse import parse_message
from tests import binhex
from tests.memory import peak_of
from tests.yenc import yencoded

ENV = Envelope(sender="a@example.com", recipients=("b@example.com",))
PAYLOAD = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


def _message(nl: bytes = b"\r\n") -> bytes:
    attachment = base64.encodebytes(PAYLOAD).replace(b"\n", nl)
    text = (
        b'From: "Doe, Jane" <Jane.Doe@Example.COM>\n'
        b"Subject: =?utf-8?B?SGVsbG8g4pyT?=\n"
        b"Message-ID:  <id-1@example.com> \n"
        b'Content-Type: multipart/mixed; boundary="=_b"\n'
        b"\n"
        b"--=_b\n"
        b"Content-Type: text/plain; charset=utf-8\n"
        b"Content-Transfer-Encoding: quoted-printable\n"
        b"\n"
        b"caf=C3=A9 au lait=\n"
        b" soft\n"
        b"--=_b\n"
        b'Content-Type: image/png; name="p.png"\n'
        b"Content-Transfer-Encoding: base64\n"
        b"\n"
    ).replace(b"\n", nl)
    return text + attachment + nl + b"--=_b--" + nl


def test_message_facts() -> None:
    raw = _message()
    facts = parse_message(raw, ENV)
    assert facts.envelope is ENV
    assert facts.flags == frozenset()
    assert facts.from_address == "jane.doe@example.com"
    assert facts.subject == "Hello ✓"
    assert facts.message_id == "<id-1@example.com>"
    assert facts.size == len(raw)
    assert facts.newline == b"\r\n"
    assert raw[facts.body_offset : facts.body_offset + 5] == b"--=_b"
    assert facts.text == "café au lait soft"
    root, text, image = facts.parts
    assert root.is_multipart and not root.is_attachment
    assert (text.charset, text.transfer_encoding, text.is_attachment) == (
        "utf-8",
        "quoted-printable",
        False,
    )
    assert raw[text.body_start : text.body_end] == b"caf=C3=A9 au lait=\r\n soft"
    assert raw[text.header_start : text.header_start + 13] == b"Content-Type:"
    assert image.filename == "p.png" and image.is_attachment
    assert image.detected_type == "image/png"
    assert image.decoded_size == len(PAYLOAD)
    assert base64.b64decode(raw[image.body_start : image.body_end]) == PAYLOAD


def test_lf_message_is_equivalent() -> None:
    facts = parse_message(_message(b"\n"), ENV)
    assert facts.newline == b"\n"
    assert facts.parts[2].decoded_size == len(PAYLOAD)
    assert facts.text == "café au lait soft"


def test_from_address_forms() -> None:
    for header, expected in [
        (b"From: bob@EXAMPLE.org", "bob@example.org"),
        (b"From: bob@example.org (Bob Smith)", "bob@example.org"),
        (b'From: "x@evil.example" <real@example.org>', "real@example.org"),
        (b"From: undisclosed", None),
    ]:
        assert parse_message(header + b"\r\n\r\nbody\r\n", ENV).from_address == expected


def test_text_is_bounded_and_broken_base64_decodes_what_it_can() -> None:
    raw = (
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29y!bGQ\r\n"
    )
    facts = parse_message(raw, ENV)
    assert facts.flags == frozenset({"bad_base64", "malformed"})
    assert facts.text == "hello world"


def test_big_attachment_sizes_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[int] = []
    decode = transfer.decode

    def recording_decode(data: bytes, encoding: str) -> bytes:
        decoded.append(len(data))
        return decode(data, encoding)

    monkeypatch.setattr(transfer, "decode", recording_decode)
    payload = b"MZ" + os.urandom(300_000)
    body = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    raw = (
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + body
        + b"\r\n--x--\r\n"
    )
    part = parse_message(raw, ENV).parts[1]
    assert (part.decoded_size, part.detected_type) == (len(payload), "application/x-dosexec")
    assert max(decoded) < 1024  # the magic bytes come from the first few encoded lines alone


def _qp_attachment(body: bytes) -> bytes:
    return (
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body + b"\r\n--x--\r\n"
    )


@pytest.mark.parametrize(
    ("body", "size"),
    [
        pytest.param(b"=" * 3000, 3000, id="equals-signs"),
        pytest.param(b"=ZZ" * 1000, 3000, id="not-hex"),
        pytest.param(b"=4=41" * 600, 1800, id="half-escapes"),
        pytest.param(b"=3d=4A" * 500 + b"=\r\n=\n", 1000, id="well-formed"),
        pytest.param(binascii.b2a_qp(b"\xff" * 2000).replace(b"\n", b"\r\n"), 2000, id="binary"),
    ],
)
def test_a_quoted_printable_size_counts_a_malformed_escape_as_written(
    body: bytes, size: int
) -> None:
    # Readers keep a "=" they cannot decode; a size counting every "=" as an escape let
    # 3,000 bytes of "=" pass a 1,000-byte max_attachment_bytes as 0 bytes.
    assert parse_message(_qp_attachment(body), ENV).parts[1].decoded_size == size


@pytest.mark.parametrize("blank", [b" ", b"\t", b" \t "])
def test_a_base64_size_counts_no_blank_ending_a_line(blank: bytes) -> None:
    # Readers skip the blanks a gateway leaves at the end of each line: counted as data,
    # a 4,000-byte file was 4,053 bytes to size_over and max_attachment_bytes, and its end
    # (a fixed VHD's footer) was looked for where it is not.
    payload = bytes(range(256)) * 13 + bytes(160) + b"conectix" + bytes(504)
    body = base64.encodebytes(payload).replace(b"\n", blank + b"\r\n")
    part = parse_message(_qp_attachment(body).replace(b"quoted-printable", b"base64"),
                         ENV).parts[1]
    assert (part.decoded_size, part.detected_type) == (4000, "application/x-vhd")


def test_attachment_classification() -> None:
    raw = (
        b"Content-Type: multipart/related; boundary=r\r\n\r\n--r\r\n"
        b"Content-Type: text/html\r\n\r\n<p>x</p>\r\n--r\r\n"
        b"Content-Type: image/gif\r\nContent-ID: <logo>\r\n\r\nGIF89a\r\n--r\r\n"
        b"Content-Type: text/csv\r\n"
        b'Content-Disposition: attachment; filename="a.csv"\r\n\r\na,b\r\n'
        b"--r--\r\n"
    )
    facts = parse_message(raw, ENV)
    assert [(p.content_type, p.is_attachment, p.disposition) for p in facts.parts] == [
        ("multipart/related", False, None),
        ("text/html", False, None),
        ("image/gif", True, None),
        ("text/csv", True, "attachment"),
    ]
    assert facts.has_html
    assert facts.parts[2].detected_type == "image/gif"


def test_signed_and_encrypted_subtrees_are_marked() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
        b'Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary=s\r\n\r\n'
        b"--s\r\nContent-Type: text/plain\r\n\r\nsigned\r\n"
        b"--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--s--\r\n--o\r\n"
        b"Content-Type: application/pkcs7-mime; name=smime.p7m\r\n\r\nabc\r\n--o\r\n"
        b"Content-Type: text/plain\r\n\r\nplain\r\n--o--\r\n"
    )
    assert [p.in_signed for p in parse_message(raw, ENV).parts] == [
        False,
        True,
        True,
        True,
        True,
        False,
    ]


def _signed(content_type: bytes, *parts: bytes) -> bytes:
    return (
        b"Content-Type: " + content_type + b"; boundary=s\r\n\r\n"
        + b"".join(b"--s\r\n" + part + b"\r\n" for part in parts)
        + b"--s--\r\n"
    )


_HTML = b"Content-Type: text/html\r\n\r\n<script>x</script>"
_PGP_SIG = b"Content-Type: application/pgp-signature\r\n\r\nsig"
_SMIME_SIG = b"Content-Type: application/pkcs7-signature\r\n\r\nsig"


@pytest.mark.parametrize(
    ("raw", "signed"),
    [
        (_signed(b'multipart/signed; protocol="application/pgp-signature"', _HTML, _PGP_SIG),
         True),
        (_signed(b"multipart/signed; protocol=application/x-pkcs7-signature", _HTML, _SMIME_SIG),
         True),
        (_signed(b"multipart/signed", _HTML, _PGP_SIG), False),
        (_signed(b"multipart/signed", _HTML), False),
        (_signed(b'multipart/signed; protocol="text/plain"', _HTML, _PGP_SIG), False),
        (_signed(b'multipart/signed; protocol="application/pgp-signature"', _HTML), False),
        (_signed(b'multipart/signed; protocol="application/pgp-signature"', _HTML, _HTML),
         False),
        (_signed(b'multipart/signed; protocol="application/pgp-signature"', _HTML, _SMIME_SIG),
         False),
        (_signed(b'multipart/signed; protocol="application/pgp-signature"',
                 _HTML, _PGP_SIG, _PGP_SIG), False),
    ],
    ids=["pgp", "smime", "no-protocol", "one-part", "unknown-protocol", "no-signature-part",
         "html-as-signature", "other-kind-of-signature", "three-parts"],
)
def test_only_a_well_formed_signature_marks_its_parts_signed(raw: bytes, signed: bool) -> None:
    facts = parse_message(raw, ENV)
    assert [p.in_signed for p in facts.parts[:2]] == [signed, signed]
    assert facts.flags == frozenset()


_PGP_CONTROL = b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1"
_PGP_DATA = b"Content-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----"
_PGP_MIME = b'multipart/encrypted; protocol="application/pgp-encrypted"'


@pytest.mark.parametrize(
    ("raw", "encrypted"),
    [
        (_signed(_PGP_MIME, _PGP_CONTROL, _PGP_DATA), True),
        (_signed(b"multipart/encrypted", _PGP_CONTROL, _PGP_DATA), False),
        (_signed(b'multipart/encrypted; protocol="text/html"', _PGP_CONTROL, _PGP_DATA), False),
        (_signed(b"multipart/encrypted", _HTML), False),
        (_signed(_PGP_MIME, _HTML), False),
        (_signed(_PGP_MIME, _PGP_CONTROL, _HTML), False),
        (_signed(_PGP_MIME, _HTML, _PGP_DATA), False),
        (_signed(_PGP_MIME, _PGP_DATA, _PGP_CONTROL), False),
        (_signed(_PGP_MIME, _PGP_CONTROL, _PGP_DATA, _HTML), False),
    ],
    ids=["pgp-mime", "no-protocol", "unknown-protocol", "no-protocol-one-part", "one-part",
         "html-as-data", "html-as-control", "parts-swapped", "three-parts"],
)
def test_only_well_formed_pgp_encryption_marks_its_parts_encrypted(
    raw: bytes, encrypted: bool
) -> None:
    facts = parse_message(raw, ENV)
    assert [p.in_signed for p in facts.parts[:2]] == [encrypted, encrypted]
    assert facts.flags == frozenset()


def test_smime_stays_opaque() -> None:
    raw = (
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\r\n"
    )
    assert [p.in_signed for p in parse_message(raw, ENV).parts] == [True]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    facts = parse_message(raw, ENV)
    assert facts.size == len(raw)
    assert "parser_error" not in facts.flags
    assert facts.flags <= mimeflags.FLAGS
    for part in facts.parts:
        assert 0 <= part.header_start <= part.body_start <= part.body_end <= len(raw)


_pieces = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: text/html; charset=x-bad\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Disposition: attachment; filename*0*=utf-8''%E2; filename*1=x\r\n",
        b"\r\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"=?utf-8?q?=C3?=\r\n",
        b"TVqQAAMAAAAEAAAA//8AAL\r\n",
        b"\xff\xfe\x00\r\n",
        b" folded\r\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=40))
def test_mime_shaped_garbage_never_raises(pieces: list[bytes]) -> None:
    raw = b"".join(pieces)
    facts = parse_message(raw, ENV, max_parts=50, max_depth=5)
    assert "parser_error" not in facts.flags
    assert len(facts.parts) <= 50
    assert all(p.depth <= 5 for p in facts.parts)


_EXE = base64.encodebytes(b"MZ\x90\x00" + bytes(200))


def _attachment(*headers: bytes) -> bytes:
    return (
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        + b"".join(h + b"\r\n" for h in headers)
        + b"Content-Transfer-Encoding: base64\r\n\r\n" + _EXE + b"--b--\r\n"
    )


@pytest.mark.parametrize(
    "headers",
    [
        # RFC 2231 readers prefer filename*, others the plain one.
        (b"Content-Disposition: attachment; filename=\"a.pdf\"; filename*=utf-8''a.exe",),
        (b'Content-Disposition: attachment; filename="a.pdf"; filename*0="a."; filename*1="exe"',),
        (b'Content-Disposition: attachment; filename="a.pdf"; filename="a.exe"',),
        (b'Content-Type: application/pdf; name="a.exe"',
         b'Content-Disposition: attachment; filename="a.pdf"'),
        (b'Content-Disposition: attachment; filename="a.pdf"',
         b'Content-Disposition: attachment; filename="a.exe"'),
        (b'Content-Disposition: attachment; filename="a.pdf"', b"Content-Name: a.exe"),
        (b'Content-Type: application/pdf; name="a.pdf"', b"X-Sun-Data-Name: a.exe"),
    ],
    ids=["rfc2231-beside-plain", "continuation-beside-plain", "repeated", "name-vs-filename",
         "second-disposition", "content-name-header", "x-sun-data-name-header"],
)
def test_every_name_a_reader_might_show_is_tested(headers: tuple[bytes, ...]) -> None:
    facts = parse_message(_attachment(*headers), ENV)
    [part] = facts.attachments
    assert part.filename == "a.pdf"  # what the audit row shows
    assert set(part.filenames) == {"a.pdf", "a.exe"}
    assert "ambiguous_filename" in facts.flags
    rule = load_policy_set_from_sources([("p", _EXE_RULE)])
    assert evaluate(rule, facts).action is Action.REJECT


@pytest.mark.parametrize(("header", "reading"), [
    (b'Content-Disposition: attachment; filename="a.pdf" update.exe"', 'a.pdf" update.exe'),
    (b'Content-Type: application/pdf; name="a.pdf" update.exe; x=y', '"a.pdf" update.exe'),
    (b'Content-Disposition: attachment; filename="a.pdf" x";update.exe"',
     'a.pdf" x";update.exe'),  # a ";" within quotes ends nothing to it
], ids=["disposition", "content-type", "quoted-semicolon"])
def test_a_quoted_name_with_more_after_it_is_read_as_the_email_package_reads_it_too(
        header: bytes, reading: str) -> None:
    """The review of 6 December: Python's email package (compat32) reads the value up to
    the ";", ``a.pdf" update.exe``, where the quoted string ends at ``a.pdf``; the rules
    saw only that one."""
    facts = parse_message(_attachment(header), ENV)
    [part] = facts.attachments
    assert part.filename == "a.pdf"
    assert reading in part.filenames
    assert "ambiguous_filename" in facts.flags
    rule = load_policy_set_from_sources([("p", _EXE_RULE)])
    assert evaluate(rule, facts).action is Action.REJECT


@pytest.mark.parametrize("written", ["a.exe. .", "a.exe::$DATA"],
                         ids=["trailing-dots", "ntfs-stream"])
def test_a_name_is_also_tested_as_windows_saves_it(written: str) -> None:
    facts = parse_message(_attachment(
        b'Content-Disposition: attachment; filename="%s"' % written.encode()), ENV)
    [part] = facts.attachments
    assert part.filenames == (written, "a.exe")
    assert "ambiguous_filename" not in facts.flags
    rule = load_policy_set_from_sources([("p", _EXE_RULE)])
    assert evaluate(rule, facts).action is Action.REJECT


def test_one_name_written_two_ways_is_not_ambiguous() -> None:
    facts = parse_message(_attachment(
        b'Content-Type: application/pdf; name="=?utf-8?B?w6kucGRm?="',
        b"Content-Disposition: attachment; filename*=utf-8''%C3%A9.pdf",
    ), ENV)
    assert facts.attachments[0].filenames == ("é.pdf",)
    assert "ambiguous_filename" not in facts.flags


@pytest.mark.parametrize(
    ("headers", "html"),
    [
        (b"Content-Type: text/html", True),
        (b'Content-Type: application/octet-stream; name="a.HTM"', True),
        (b"Content-Type: application/x-unknown-content-type\r\nContent-Name: a.shtml", True),
        (b"Content-Type: application/octet-stream\r\n"
         b'Content-Disposition: inline; filename="a.html."', True),
        (b'Content-Type: application/octet-stream; name="a.pdf"; name*=\'\'a.html', True),
        (b'Content-Type: application/octet-stream; name="a.html"\r\n'
         b"Content-Disposition: attachment", False),
        (b'Content-Type: application/octet-stream; name="a.html"\r\n'
         b"Content-Disposition: x-unknown", False),
        (b'Content-Type: text/plain; name="a.html"', False),
        (b'Content-Type: application/pdf; name="a.html"', False),
        (b'Content-Type: application/octet-stream; name="a.html.pdf"', False),
    ],
    ids=["text-html", "octet-stream-named", "unknown-type-content-name", "inline-windows-name",
         "one-of-its-names", "attachment", "unknown-disposition", "text-plain", "declared-pdf",
         "not-the-extension"],
)
def test_a_part_readers_render_as_html_is_html(headers: bytes, html: bool) -> None:
    facts = parse_message(headers + b"\r\n\r\n<p>x</p>\r\n", ENV)
    assert (facts.parts[0].is_html, facts.has_html) == (html, html)


_UU_EXE = b"M35J0``,````$````__\\``+@`````````0`````````````````````````\r\n"


@pytest.mark.parametrize(
    ("begin", "names"),
    [
        (b"begin 644 a.exe", [("a.exe",)]),
        (b"begin 0755   a.exe", [("a.exe",)]),
        (b'begin 644 a.exe"x.pdf', [("a.exe", 'a.exe"x.pdf')]),  # in a made-up filename="..."
        (b"begin 644 =?utf-8?Q?a.exe?=", [("a.exe", "=?utf-8?Q?a.exe?=")]),
        (b"begin 644 ", [()]),
        (b"begin 64 a.exe", []),
        (b"begin 648 a.exe", []),
        (b"begin 644\ta.exe", []),
        (b" begin 644 a.exe", []),
        (b"Begin 644 a.exe", []),
    ],
    ids=["plain", "four-digits-spaces", "quote-in-name", "encoded-word", "no-name",
         "two-digits", "not-octal", "tab", "indented", "capital"],
)
def test_uuencoded_files_are_read_as_thunderbird_reads_them(
    begin: bytes, names: list[tuple[str, ...]]
) -> None:
    raw = b"Subject: s\r\n\r\n" + begin + b"\r\n" + _UU_EXE + b"`\r\nend\r\n"
    facts = parse_message(raw, ENV)
    assert [p.filenames for p in facts.attachments] == names
    assert [p.detected_type for p in facts.attachments] == ["application/x-dosexec"] * len(names)
    assert ("uuencoded" in facts.flags) is bool(names)


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b"To install, run:\r\nbegin 644 setup.exe\r\n", []),
        (b"begin 644 a.exe\r\n\r\n \r\n`\r\nend\r\nbegin 644 b.exe\r\n" + _UU_EXE, ["b.exe"]),
        (b"begin 644 a.exe\r\nbegin 644 b.exe\r\n" + _UU_EXE + b"`\r\nend\r\n", ["b.exe"]),
        (b"begin 644 a.exe\r\n" + _UU_EXE, ["a.exe"]),
        (b"begin 644 a.exe\r\nsee you\r\n", ["a.exe"]),
    ],
    ids=["prose", "blank-lines-then-a-file", "next-begin-line", "cut-off", "any-line-decodes"],
)
def test_a_uuencoded_file_needs_a_line_that_decodes_to_a_byte(
    body: bytes, names: list[str]
) -> None:
    # Thunderbird decodes every line after a begin line but empty ones and those whose
    # length character says none: a begin line with no such line after it is no file.
    facts = parse_message(b"Content-Type: text/plain\r\n\r\n" + body, ENV)
    assert [p.filename for p in facts.attachments] == names
    assert ("uuencoded" in facts.flags) is bool(names)


def test_a_uuencoded_block_runs_to_its_end_line_or_the_next_block() -> None:
    raw = (
        b"Content-Type: text/plain\r\n\r\nbegin 644 a.exe\r\n" + _UU_EXE + b" \r\nEND\r\n"
        + b"begin 644 b.exe\r\n" + _UU_EXE + b"end\r\ntext after\r\n"
    )
    facts = parse_message(raw, ENV)
    text, first, second = facts.parts
    assert [(p.path, p.parent, p.depth, p.filename) for p in (first, second)] == [
        ("1", 0, 1, "a.exe"), ("2", 0, 1, "b.exe")
    ]
    # Only "end" in any case after a lower-case "e" ends a block, as in Thunderbird.
    assert raw[first.header_start : first.body_end].endswith(b"END\r\n")
    assert raw[second.header_start : second.body_end].endswith(b"end\r\n")
    assert second.body_end < text.body_end


def _uu_lines(data: bytes, size: int) -> bytes:
    return b"".join(binascii.b2a_uu(data[at : at + size]) for at in range(0, len(data), size))


def _uu_block(lines: bytes) -> bytes:
    return b"begin 644 notes.txt\n" + lines + b"`\nend\n"


def _yenc_block(encoded: bytes) -> bytes:
    return b"=ybegin line=128 size=1 name=notes.txt\n" + encoded + b"\n=yend\n"


def _yenc_lines(data: bytes) -> bytes:
    """yEnc of ``data`` that holds no byte it escapes, in lines of 128."""
    encoded = data.translate(bytes((byte + 42) % 256 for byte in range(256)))
    assert not any(char in encoded for char in b"\0\n\r=")
    return b"\n".join(encoded[at : at + 128] for at in range(0, len(encoded), 128))


_BIG_ISO = bytes(0x8000) + b"\x01CD001\x01" + bytes(2_000_000)
def _binhex_runs(run: bytes) -> bytes:
    """A BinHex file of a byte then a million ``run``s, its fork as long as can be."""
    return binhex.binhex_block(binhex.header(b"a", 2**32 - 1) + b"\x01" + run * 1_000_000)


# A fixed VHD whose footer lies past 600 KB of bytes run-length coding does not shorten.
_BIG_VHD = random.Random(3).randbytes(600_000) + b"conectix" + bytes(504)


@pytest.mark.parametrize(
    ("block", "detected"),
    [
        pytest.param(_uu_block(_uu_lines(_BIG_ISO, 45)), "application/x-iso9660-image",
                     id="2-mb-iso"),
        pytest.param(_uu_block(_uu_lines(_BIG_ISO[:40_000], 1)), "application/x-iso9660-image",
                     id="a-byte-a-line"),
        pytest.param(_uu_block(b"M" + b"!" * 2_000_000 + b"\n"), None, id="one-2-mb-line"),
        pytest.param(_uu_block(b"M" + b"!" * 60 + b"\n" + b"!" * 2_000_000 + b"\n"), None,
                     id="one-2-mb-line-after-the-first"),
        pytest.param(_yenc_block(_yenc_lines(_BIG_ISO)), "application/x-iso9660-image",
                     id="yenc-2-mb-iso"),
        pytest.param(_yenc_block(b"\n" * 2_000_000), None, id="yenc-2-mb-of-line-ends"),
        pytest.param(_yenc_block(b"=m" * 1_000_000), None, id="yenc-2-mb-of-escapes"),
        pytest.param(binhex.binhexed(b"notes.txt", _BIG_ISO), "application/x-iso9660-image",
                     id="binhex-2-mb-iso"),
        pytest.param(binhex.binhexed(b"notes.txt", _BIG_VHD), "application/x-vhd",
                     id="binhex-vhd-decoded-whole"),
        pytest.param(_binhex_runs(b"\x90\xff"), None, id="binhex-runs-of-a-quarter-gigabyte"),
        pytest.param(_binhex_runs(b"\x90\x01"), None, id="binhex-2-mb-of-runs-of-nothing"),
    ],
)
def test_a_file_in_text_is_read_for_its_marks_in_bounded_memory(
    block: bytes, detected: str | None
) -> None:
    # Only the lines that hold the head and the marks are decoded, however long the file
    # or its lines (yEnc's are counted, not decoded, up to them); BinHex is decoded from
    # its start, a piece at a time, and only the bytes of its head and marks are kept,
    # however many bytes its runs stand for.
    def marks() -> str | None:
        [found], _ = uuencode.blocks(block, 0, len(block), 1, uuencode.Budget())
        return magic.detect(found.head, found.read)
    found, peak = peak_of(marks)
    assert found == detected
    assert peak < 512 * 1024, f"{peak / 2**10:.0f} KiB"


@pytest.mark.parametrize(
    "block",
    [lambda data: _uu_block(_uu_lines(data, 45)), lambda data: _yenc_block(yencoded(data)),
     lambda data: binhex.binhexed(b"notes.txt", data, runs=True)],
    ids=["uu", "yenc", "binhex"],
)
def test_a_file_in_text_is_read_where_asked_as_its_lines_decode(
    block: Callable[[bytes], bytes]
) -> None:
    # Random bytes, a quarter of them ones yEnc escapes, and runs of them, some of 0x90,
    # which BinHex escapes: whatever the place, the bytes read there are the file's (an
    # escape a count ends in, a line end, a line's last, in a run or after one).
    rng = random.Random(7)
    data = b"".join(bytes([rng.choice([rng.randrange(256), 0xD6, 0xE0, 0xE3, 0x13, 0x90])])
                    * rng.choice([1, 1, 1, 1, 2, 3, 40, 300]) for _ in range(6_000))[:40_000]
    text = block(data)
    unbounded = uuencode.Budget(text=2**40, runs=2**40)  # read some 200 times, as no message is
    [found], _ = uuencode.blocks(text, 0, len(text), 1, unbounded)
    assert found.read is not None
    for offset in [*range(0, 40_000, 331), *range(-600, 0, 7)]:  # a footer's 512 at most
        assert found.read(offset, 8) == data[offset:][:8], offset


def test_uuencoded_files_count_against_the_part_limits() -> None:
    raw = b"Subject: s\r\n\r\n" + (b"begin 644 a.exe\r\n" + _UU_EXE) * 5
    assert len(parse_message(raw, ENV, max_parts=3).parts) == 3
    assert "too_many_parts" in parse_message(raw, ENV, max_parts=3).flags
    nested = b"Content-Type: message/rfc822\r\n\r\n" + raw
    facts = parse_message(nested, ENV, max_depth=1)
    assert "too_deep" in facts.flags and not any(p.uuencoded for p in facts.parts)


_EXE_RULE = """
version: 1
name: p
rules:
  - name: no-exe
    when: {attachment: {filename: ["*.exe"]}}
    then: reject
"""


def test_the_flags_a_policy_may_name_are_the_documented_ones() -> None:
    table = re.findall(r"^``([a-z0-9_]+)``  ", mimeflags.__doc__ or "", re.MULTILINE)
    assert sorted(table) == sorted(mimeflags.FLAGS)


@pytest.mark.parametrize("lookalikes", [0, 63, 64, 200])
def test_delimiters_are_found_past_many_lines_that_only_look_like_them(lookalikes: int) -> None:
    # Past 64 places that hold the delimiter but are no delimiter line, the search
    # changes from bytes.find to regular expressions: the parts come out the same.
    noise = b"".join(b"--bb %d\r\nx--b\r\n" % i for i in range(lookalikes))
    raw = (b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain\r\n\r\n" + noise + b"one\r\n"
           b"--b \r\nContent-Type: text/plain\r\n\r\ntwo\r\n--b--\r\n")
    facts = parse_message(raw, ENV)
    assert [p.content_type for p in facts.parts] == ["multipart/mixed", "text/plain", "text/plain"]
    assert not facts.flags
    assert facts.raw[facts.parts[2].body_start:facts.parts[2].body_end] == b"two"


def test_a_message_partial_fragment_is_flagged_as_not_looked_into() -> None:
    # A reader that reassembles the fragments sees a.zip; no fragment shows it here.
    raw = (b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: message/partial; id="x@y"; number=1; total=2\r\n\r\n'
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b'Content-Type: application/zip; name="a.zip"\r\n\r\nPK\x03\x04\r\n')
    facts = parse_message(raw, ENV)
    assert {"partial_message", "malformed"} <= facts.flags
    assert [part.content_type for part in facts.attachments] == ["message/partial"]


def test_a_long_quoted_file_name_costs_no_memory_per_character() -> None:
    """A 2 MB quoted name: the quoted string's repeat kept a backtracking point per
    character (some 190 bytes each) before it was made possessive."""
    name = "a" * 2_000_000 + ".pdf"
    header = b'Content-Disposition: attachment; filename="%s"' % name.encode()
    facts, peak = peak_of(lambda: parse_message(_attachment(header), ENV))
    assert facts.attachments[0].filename == name
    assert peak < 64 * 1024 * 1024, f"{peak / 2**20:.0f} MiB"


def _fields(count: int) -> bytes:
    return b"X: y\r\n" * count


@pytest.mark.parametrize(("top", "part", "cut"), [
    (MAX_FIELDS - 2, 1, False),  # Content-Type, then the part's one: 10,000 in all
    (MAX_FIELDS - 1, 0, False),  # 10,000 at the top, the part's section empty
    (MAX_FIELDS, 0, True),
    (6_000, 6_000, True),  # every section counts
])
def test_past_ten_thousand_header_fields_the_rest_is_unread_and_the_message_refused(
        top: int, part: int, cut: bool) -> None:
    """The review of 6 December: 1.6 million ``X: y`` lines in a part (9.6 MB) took the
    milter 9 s and 473 MB, each field parsed into a Header of three strings."""
    raw = (b"Content-Type: multipart/mixed; boundary=b\r\n" + _fields(top) + b"\r\n--b\r\n"
           + _fields(part) + b"\r\nhi\r\n--b--\r\n")
    facts = parse_message(raw, ENV)
    assert ("too_many_header_fields" in facts.flags) is cut
    verdict = evaluate(load_policy_set_from_sources([("p", _EXE_RULE)]), facts)
    assert (verdict.rules == ("limit:max_header_fields",)) is cut
    assert (verdict.action is Action.REJECT) is cut


def test_past_two_mebibytes_of_header_fields_the_rest_is_unread_and_the_message_refused(
        ) -> None:
    """A part's header section is body to Postfix, which bounds none of its fields: 20 MB
    of one Content-Type's parameters took the parser 6 s, in two fields."""
    def message(parameters: int) -> bytes:
        return (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                b"Content-Type: application/octet-stream" + b"; a=b" * parameters
                + b"\r\n\r\nMZ\r\n--b--\r\n")

    within = (MAX_FIELD_OCTETS - 100) // 5  # with the first section's 45 octets
    assert "too_many_header_fields" not in parse_message(message(within), ENV).flags
    facts = parse_message(message(within + 20), ENV)
    assert "too_many_header_fields" in facts.flags
    verdict = evaluate(load_policy_set_from_sources([("p", _EXE_RULE)]), facts)
    assert verdict.rules == ("limit:max_header_fields",) and verdict.action is Action.REJECT


def test_a_million_header_fields_cost_no_memory_for_each() -> None:
    raw = b"Subject: s\r\n" + _fields(1_000_000) + b"\r\nbody\r\n"
    facts, peak = peak_of(lambda: parse_message(raw, ENV))
    assert "too_many_header_fields" in facts.flags
    assert peak < 64 * 1024 * 1024, f"{peak / 2**20:.0f} MiB"


def test_ten_thousand_fields_and_then_the_body_without_a_blank_line_are_no_more() -> None:
    """The line after the last field is no field: the body begins, as with fewer."""
    raw = b"Subject: s\r\n" + _fields(MAX_FIELDS - 1) + b"just text\r\n"
    facts = parse_message(raw, ENV)
    assert "too_many_header_fields" not in facts.flags
    assert "missing_header_separator" in facts.flags


_HIDDEN = b"--b\r\nContent-Type: text/html\r\n\r\n<p onclick=x>hi</p>\r\n--b--\r\n"


@pytest.mark.parametrize(("close", "malformed"), [
    (b"--b\r\n--b--\r\n" + _HIDDEN, True),  # Python's email package reads on: the HTML is a part
    (b"--b\r\n--b--\r\n\r\n", False),  # nothing after it to read otherwise
    (b"--b\r\n\r\n--b--\r\n" + _HIDDEN, False),  # a line break of its own: a close for all
])
def test_a_close_delimiter_right_after_the_delimiter_line_before_it_is_malformed(
        close: bytes, malformed: bool) -> None:
    # RFC 2046 wants a line break of its own before a delimiter: without one, Python's
    # email package reads the close delimiter as text of the part, and the epilogue as
    # parts, whose HTML went out unsanitized and whose files unchecked.
    facts = parse_message(b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + close, ENV)
    assert ("missing_end_boundary" in facts.flags) is malformed
    assert ("malformed" in facts.flags) is malformed
