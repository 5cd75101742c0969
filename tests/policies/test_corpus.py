"""The hostile corpus: every message's exact facts and, for HTML, what sanitizing leaves.

Each .eml under corpus/ is hand-written; the two structural monsters (1000
parts, depth 100) are built in code below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from postwarden_policies.facts import Envelope, MessageFacts
from postwarden_policies.mimeparse import parse_message
from postwarden_policies.rewrite import HtmlOptions, RewriteError, RewritePlan, rewrite_body

CORPUS = Path(__file__).parent / "corpus"
SCHEMES = frozenset({"http", "https", "mailto", "cid"})
EXE = "application/x-dosexec"
OCTET = "application/octet-stream"
M = "malformed"


@dataclass(frozen=True)
class Case:
    flags: frozenset[str] = frozenset()
    attachments: tuple[tuple[str | None, str, str | None], ...] = ()
    absent: tuple[str, ...] = ()  # case-insensitive, in the sanitized HTML
    present: tuple[str, ...] = ()
    remote_images: str = "keep"


def f(*names: str) -> frozenset[str]:
    return frozenset(names)


CASES: dict[str, Case] = {
    # --- HTML attacks: the dangerous construct is gone, the content stays ---
    "html_mixed_case_script": Case(
        absent=("script", "alert", "evil.example"), present=("<p>Hello</p>",)
    ),
    "html_unquoted_onerror": Case(
        absent=("onerror", "alert"), present=('<img src="x">', '<img src="y">')
    ),
    "html_javascript_entities": Case(
        absent=("javascript", "alert", "href"), present=("one", "two", "three")
    ),
    "html_javascript_whitespace": Case(
        absent=("javascript", "alert", "href"), present=("one", "two", "three")
    ),
    "html_vbscript": Case(
        absent=("vbscript", "msgbox"), present=('href="https://example.com/ok"',)
    ),
    "html_svg_onload": Case(
        absent=("svg", "onload", "alert", "xlink"), present=("<p>visible</p>",)
    ),
    # The link a base set, written whole: as it reads, and as link scanners see it.
    "html_base_href": Case(absent=("<base",), present=('<a href="http://evil.example/login"',)),
    "html_css_expression": Case(
        absent=("expression", "alert", "\\78"), present=('style="color:red"',)
    ),
    "html_css_url_javascript": Case(
        absent=("url(", "javascript", "alert"), present=('style="color:blue"', "bg2")
    ),
    "html_qp_soft_break_script": Case(
        absent=("script", "onerror", "alert"), present=("<p>Hi</p>", '<img src="x">')
    ),
    "html_base64_part": Case(absent=("script", "onerror", "alert"), present=("<p>Encoded</p>",)),
    "html_meta_refresh": Case(
        absent=("<meta", "refresh", "evil.example"), present=("<p>Moved</p>",)
    ),
    "html_iframe_srcdoc": Case(
        absent=("iframe", "srcdoc", "alert", "evil.example"), present=("<p>after</p>",)
    ),
    "html_form_action": Case(
        absent=("<form", "action", "<input", "evil.example"), present=("<p>Password</p>",)
    ),
    "html_data_urls": Case(
        absent=("data:text", "svg+xml", "phnjcmlwd"),
        present=('src="data:image/png;base64,iVBORw0KGgo="', "click"),
    ),
    "html_remote_images": Case(
        absent=("tracker.example",),
        present=('src="cid:logo@example.com"', "<p>News</p>"),
        remote_images="strip",
    ),
    "html_object_embed": Case(
        absent=("<object", "<embed", "<applet", ".swf"), present=("<p>text</p>",)
    ),
    "html_event_handlers": Case(
        absent=("onload", "onmouseover", "onclick", "alert"), present=("hover", "link")
    ),
    "html_conditional_comment": Case(
        absent=("<!--", "script", "[if", "alert"), present=("<p>Outlook</p>",)
    ),
    "html_style_block": Case(
        absent=("@import", "<style", "behavior", "javascript"), present=("<p>body</p>",)
    ),
    "html_nested_tag_trick": Case(absent=("<script", "<scr"), present=("<p>still here</p>",)),
    "html_latin1_charset": Case(absent=("script", "alert"), present=("<p>café crème</p>",)),
    # --- MIME structure ---
    "missing_end_boundary": Case(
        f(M, "missing_end_boundary"), (("a.pdf", "application/pdf", "application/pdf"),)
    ),
    "nested_rfc822_exe": Case(
        attachments=((None, "message/rfc822", None), ("tool.exe", OCTET, EXE))
    ),
    "rfc2231_filename": Case(attachments=(("€rate.pdf.exe", OCTET, EXE),)),
    "rfc2231_plain_continuation": Case(attachments=(("verylong.exe", OCTET, EXE),)),
    "rfc2231_latin1_lang": Case(attachments=(("Rechnungü.exe", OCTET, EXE),)),
    "rfc2047_filename": Case(attachments=(("überweisung.exe", OCTET, EXE),)),
    "rfc2047_q_filename_split": Case(attachments=(("reçu.pdf.exe", OCTET, EXE),)),
    "double_extension": Case(attachments=(("invoice.pdf.exe", "application/pdf", EXE),)),
    "exe_declared_png": Case(attachments=(("photo.png", "image/png", EXE),)),
    "name_only_in_content_type": Case(
        attachments=(("setup.scr", "application/x-msdownload", EXE),)
    ),
    "duplicate_filename_param": Case(
        f("ambiguous_filename"), attachments=(("report.txt", OCTET, EXE),)
    ),
    "broken_base64": Case(f(M, "bad_base64"), (("a.pdf", "application/pdf", "application/pdf"),)),
    "unknown_disposition": Case(attachments=(("w.pdf", "application/pdf", "application/pdf"),)),
    "empty_body": Case(f("empty_body")),
    "headers_only_no_blank_line": Case(f("empty_body")),
    "no_headers": Case(f(M, "no_headers")),
    "garbage_binary": Case(f(M, "no_headers")),
    "missing_header_separator": Case(f(M, "missing_header_separator")),
    "eight_bit_headers": Case(f("eight_bit_headers")),
    "unknown_charset": Case(f("unknown_charset")),
    "codec_charset": Case(f("unknown_charset")),
    "nul_charset": Case(f("unknown_charset")),  # codecs raises ValueError, not LookupError
    "unknown_charset_subject": Case(f("unknown_charset")),
    "boundary_in_preamble": Case(),
    "crlf_message": Case(),
    "lf_message": Case(),
    # A reader that takes the second Content-Type sees x.exe: it is an attachment.
    "duplicate_content_type": Case(
        f(M, "duplicate_mime_header"), attachments=(("x.exe", "text/plain", EXE),)
    ),
    "missing_boundary_param": Case(f(M, "missing_boundary")),
    "no_delimiter_found": Case(f(M, "missing_boundary")),
    "encoded_rfc822": Case(f("encoded_message"), ((None, "message/rfc822", None),)),
    "unknown_transfer_encoding": Case(f(M, "unknown_transfer_encoding"), (("a.bin", OCTET, None),)),
    "zip_ooxml_macro": Case(
        attachments=(("budget.docm", OCTET, "application/vnd.openxmlformats-officedocument"),)
    ),
    "ole_and_elf": Case(
        attachments=(
            ("old.doc", "application/msword", "application/x-ole-storage"),
            ("readme.txt", "text/plain", "application/x-executable"),
        )
    ),
    "folded_content_type": Case(
        attachments=(("run.sh", "application/x-sh", "text/x-shellscript"),)
    ),
    "digest_default_rfc822": Case(
        attachments=((None, "message/rfc822", None), (None, "message/rfc822", None))
    ),
    "qp_text_body": Case(),
    "nul_bytes_body": Case(),
    # A detached signature is CMS signed data too (with no content to read).
    "html_signed_skipped": Case(attachments=(
        ("smime.p7s", "application/pkcs7-signature", "application/pkcs7-mime"),)),
    # Outlook's winmail.dat: the file inside is an attachment too (short and long name).
    "tnef_winmail_exe": Case(
        f("ambiguous_filename"),
        attachments=(
            ("winmail.dat", "application/ms-tnef", "application/vnd.ms-tnef"),
            ("REPORT~1.SCR", OCTET, EXE),
        ),
    ),
    "tnef_cut_short": Case(
        f(M, "unreadable_tnef"),
        attachments=(("winmail.dat", "application/ms-tnef", "application/vnd.ms-tnef"),),
    ),
}


def _parse(name: str) -> MessageFacts:
    return parse_message((CORPUS / f"{name}.eml").read_bytes(), Envelope())


def _sanitized_html(facts: MessageFacts, remote_images: str) -> str:
    plan = RewritePlan(strip=(), sanitize_html=HtmlOptions(remote_images, SCHEMES))
    result = rewrite_body(facts, plan)
    assert result.body is not None, "a hostile HTML part must be rewritten"
    again = parse_message(facts.raw[: facts.body_offset] + result.body, facts.envelope)
    assert again.flags == facts.flags
    assert [p.path for p in again.parts] == [p.path for p in facts.parts]
    return again.text


def test_corpus_is_complete() -> None:
    on_disk = {path.stem for path in CORPUS.glob("*.eml")}
    assert on_disk == set(CASES)
    assert len(on_disk) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_case(name: str) -> None:
    case = CASES[name]
    facts = _parse(name)
    assert facts.flags == case.flags
    assert tuple((p.filename, p.content_type, p.detected_type) for p in facts.attachments) == (
        case.attachments
    )
    if case.absent or case.present:
        text = _sanitized_html(facts, case.remote_images)
        for dangerous in case.absent:
            assert dangerous.lower() not in text.lower()
        for kept in case.present:
            assert kept in text


def test_signed_html_that_needs_sanitizing_is_held_not_skipped() -> None:
    facts = _parse("html_signed_skipped")
    assert all(p.in_signed for p in facts.parts)
    plan = RewritePlan(strip=(), sanitize_html=HtmlOptions("keep", SCHEMES))
    with pytest.raises(RewriteError, match="signed part"):
        rewrite_body(facts, plan)
    forced = rewrite_body(facts, RewritePlan((), HtmlOptions("keep", SCHEMES), skip_signed=False))
    assert forced.body is not None and b"<script>" not in forced.body


def test_corpus_details() -> None:
    preamble = _parse("boundary_in_preamble")
    assert [(p.path, p.content_type) for p in preamble.parts] == [
        ("", "multipart/mixed"),
        ("1", "text/plain"),
        ("2", "text/plain"),
    ]
    assert preamble.text == "one\ntwo"
    assert _parse("crlf_message").newline == b"\r\n"
    assert _parse("lf_message").newline == b"\n"
    assert _parse("duplicate_content_type").parts[0].content_type == "text/plain"
    eight = _parse("eight_bit_headers")
    assert eight.subject == "Grüße ÿþ junk"  # the bytes UTF-8 cannot read: windows-1252
    assert eight.from_address == "jorg@example.com"
    assert eight.headers[1].raw_value == "Grüße \udcff\udcfe junk"
    assert _parse("unknown_charset_subject").subject == "abc and é"
    assert _parse("qp_text_body").text == "Pay to IBAN DE89 3704 in café\n"
    assert _parse("nul_bytes_body").text == "before\x00after\n"
    nested = _parse("nested_rfc822_exe")
    assert [(p.path, p.depth, p.parent) for p in nested.parts] == [
        ("", 0, None),
        ("1", 1, 0),
        ("2", 1, 0),
        ("2.1", 2, 2),
        ("2.1.1", 3, 3),
        ("2.1.2", 3, 3),
    ]
    assert nested.text == "see attached\ninner text"
    tnef = _parse("tnef_winmail_exe").attachments[1]
    assert (tnef.path, tnef.filenames) == ("2.1", ("REPORT~1.SCR", "report.pdf.scr"))
    digest = _parse("digest_default_rfc822")
    assert [p.content_type for p in digest.parts] == [
        "multipart/digest",
        "message/rfc822",
        "text/plain",
        "message/rfc822",
        "text/html",
    ]


def _many_parts(count: int) -> bytes:
    part = b'--b\r\nContent-Type: application/octet-stream; name="f.bin"\r\n\r\nx\r\n'
    return (
        b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        + part * count
        + b"--b--\r\n"
    )


def _deep(depth: int) -> bytes:
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="d%d"\r\n\r\n--d%d\r\n' % (i, i)
        for i in range(depth)
    )
    tail = b"".join(b"\r\n--d%d--" % i for i in reversed(range(depth)))
    return (
        b"From: a@example.com\r\n" + head + b"Content-Type: text/plain\r\n\r\ndeep" + tail + b"\r\n"
    )


def test_thousand_parts() -> None:
    # max_parts counts every entity, the top-level multipart included.
    facts = parse_message(_many_parts(999), Envelope())
    assert facts.flags == frozenset()
    assert len(facts.parts) == 1000
    assert len(facts.attachments) == 999
    assert {p.filename for p in facts.attachments} == {"f.bin"}
    over = parse_message(_many_parts(1000), Envelope())
    assert over.flags == frozenset({"too_many_parts"})
    assert len(over.parts) == 1000
    capped = parse_message(_many_parts(1000), Envelope(), max_parts=500)
    assert capped.flags == frozenset({"too_many_parts"})
    assert len(capped.parts) == 500


def test_depth_one_hundred() -> None:
    facts = parse_message(_deep(100), Envelope())
    assert facts.flags == frozenset()
    assert facts.parts[-1].depth == 100
    assert facts.parts[-1].content_type == "text/plain"
    assert facts.text == "deep"
    shallow = parse_message(_deep(100), Envelope(), max_depth=20)
    assert shallow.flags == frozenset({"too_deep"})
    assert max(p.depth for p in shallow.parts) == 20
    assert shallow.text == ""
