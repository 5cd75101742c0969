"""Red-team evasions: messages that mail readers read differently than the parser did.

Each runs through parse_message and evaluate with the example inbound policy:
the executable, script name or HTML must be seen as a mail reader shows it, and
the verdict must not be a plain accept (the example policy holds malformed mail).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import random
from pathlib import Path

import pytest

from postwarden_policies import (
    Action,
    AddHeader,
    Envelope,
    HtmlSanitized,
    MessageFacts,
    Quarantine,
    ReplaceBody,
    Verdict,
    evaluate,
    load_policy_set,
    parse_for,
    parse_message,
    transfer,
    uuencode,
)
from postwarden_policies.delivery import apply_edits
from postwarden_policies.headeredits import FLAGS_HEADER
from postwarden_policies.rewrite import RewritePlan, rewrite_body
from tests.binhex import BEGIN, binhex_block, binhexed, header
from tests.yenc import yencoded

INBOUND = load_policy_set(
    [Path(__file__).resolve().parents[2] / "policies" / "examples" / "inbound-default.yaml"]
)
ENV = Envelope("someone@elsewhere.test", ("alice@example.com",), "198.51.100.7")
HEAD = b"From: a@evil.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
EXE_B64 = b"TVqQAAMAAAAEAAAA"  # MZ...


def _run(raw: bytes) -> tuple[MessageFacts, Verdict]:
    facts = parse_for(INBOUND, raw, ENV)
    return facts, evaluate(INBOUND, facts)


def _exe_part(body: bytes, cte: bytes = b"base64") -> bytes:
    return (
        HEAD + b'Content-Type: application/octet-stream; name="setup.com"\r\n'
        b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + body + b"\r\n"
    )


def test_whitespace_before_base64_does_not_hide_an_executable() -> None:
    facts, verdict = _run(_exe_part(b" " * 400 + b"\r\n" + EXE_B64))
    assert facts.parts[0].detected_type == "application/x-dosexec"
    assert verdict.rules[:1] == ("block-executables",)


def test_soft_breaks_before_quoted_printable_do_not_hide_an_executable() -> None:
    body = b"=\r\n" * 200 + b"MZ=90=00=03" + b"=00" * 60
    facts, verdict = _run(_exe_part(body, b"quoted-printable"))
    assert facts.parts[0].detected_type == "application/x-dosexec"
    assert verdict.rules[:1] == ("block-executables",)


def test_a_soft_break_with_padding_after_it_does_not_hide_an_executable() -> None:
    # RFC 2045 6.7: blanks after the "=" are a gateway's padding, the line a soft break
    # (Dovecot and PHP, so Roundcube, decode "MZ"); read as a literal "= \t", it hid one.
    body = b"M= \t\r\nZ=90=00=03" + b"=00" * 60
    facts, verdict = _run(_exe_part(body, b"quoted-printable"))
    assert facts.parts[0].detected_type == "application/x-dosexec"
    assert verdict.rules[:1] == ("block-executables",)


def test_padding_past_the_scan_bound_is_malformed_not_clean() -> None:
    facts, verdict = _run(_exe_part(b" " * transfer.HEAD_SCAN + b"\r\n" + EXE_B64))
    assert {"padded_encoding", "malformed"} <= facts.flags
    assert verdict.rules[:1] == ("hold-broken-mime",)


_EXE_IN_MIXED = (
    b"\r\n\r\n--B\r\nContent-Type: application/octet-stream; name=\"a.exe\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n" + EXE_B64 + b"\r\n--B--\r\n"
)


def test_a_comment_in_the_multipart_type_does_not_hide_its_parts() -> None:
    facts, verdict = _run(HEAD + b"Content-Type: multipart/mixed (x); boundary=B" + _EXE_IN_MIXED)
    assert facts.parts[0].content_type == "multipart/mixed"
    assert {"malformed_content_type", "malformed"} <= facts.flags
    assert facts.attachments[0].detected_type == "application/x-dosexec"
    assert verdict.rules[:1] == ("hold-broken-mime",)


def test_a_comma_after_the_type_does_not_hide_it() -> None:
    raw = (
        HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
        b'Content-Type: application/x-msdownload, name="a.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + EXE_B64 + b"\r\n--B--\r\n"
    )
    facts, verdict = _run(raw)
    [part] = facts.attachments
    assert (part.content_type, part.detected_type) == (
        "application/x-msdownload",
        "application/x-dosexec",
    )
    assert "malformed_content_type" in facts.flags
    assert verdict.action is not Action.ACCEPT


def test_a_question_mark_before_the_type_does_not_hide_html() -> None:
    raw = HEAD + b'Content-Type: ?text/html\r\n\r\n<a href="javascript:alert(1)">x</a>\r\n'
    facts, verdict = _run(raw)
    assert facts.has_html
    # Malformed mail is not rewritten (see engine): the example policy holds it.
    assert {"malformed_content_type", "malformed"} <= facts.flags
    assert verdict.action is Action.QUARANTINE and verdict.rules == ("hold-broken-mime",)
    assert any(isinstance(e, AddHeader) and e.name == FLAGS_HEADER for e in verdict.edits)


def test_a_content_type_nothing_can_read_is_flagged() -> None:
    facts = parse_message(HEAD + b"Content-Type: html\r\n\r\n<p>x</p>\r\n", ENV)
    assert facts.parts[0].content_type == "text/plain"
    assert "malformed_content_type" in facts.flags


@pytest.mark.parametrize("wrapper", [b"multipart/signed", b"multipart/encrypted"])
def test_a_signature_or_encryption_without_a_protocol_does_not_stop_sanitizing(
    wrapper: bytes,
) -> None:
    raw = (
        HEAD + b"Content-Type: " + wrapper + b"; boundary=S\r\n\r\n--S\r\n"
        b'Content-Type: text/html\r\n\r\n<a href="javascript:alert(1)">x</a>'
        b"<script>alert(1)</script>\r\n--S--\r\n"
    )
    facts, verdict = _run(raw)
    assert not any(p.in_signed for p in facts.parts)
    assert [c.part for c in verdict.changes if isinstance(c, HtmlSanitized)] == ["1"]
    [body] = [e.body for e in verdict.edits if isinstance(e, ReplaceBody)]
    assert b"<script>" not in body and b"javascript:" not in body


def test_a_boundary_also_given_in_rfc2231_form_is_split_as_thunderbird_splits_it() -> None:
    raw = (
        HEAD + b"Content-Type: multipart/mixed; boundary=X; boundary*=''Y\r\n\r\n"
        b"--X\r\n\r\n--Y\r\nContent-Type: application/octet-stream; name=\"a.exe\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + EXE_B64 + b"\r\n--Y--\r\n--X--\r\n"
    )
    facts, verdict = _run(raw)
    assert {"conflicting_parameter", "malformed"} <= facts.flags
    assert [p.filename for p in facts.attachments] == ["a.exe"]
    assert verdict.action is not Action.ACCEPT


def test_a_boundary_written_as_an_encoded_word_is_split_as_written() -> None:
    # Readers decode RFC 2047 words in a file name alone (Thunderbird reads parameters
    # without, Python's email package too): the parser split at the decoy "--a" lines,
    # and the executable between the ones readers split at was text of no part.
    word = b"=?utf-8?Q?a?="
    raw = (
        HEAD + b'Content-Type: multipart/mixed; boundary="' + word + b'"\r\n\r\n'
        b"--a\r\nContent-Type: text/plain\r\n\r\n--" + word + b"\r\n"
        b'Content-Type: application/octet-stream; name="a.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + EXE_B64 + b"\r\n--" + word + b"--\r\n"
        b"--a--\r\n"
    )
    facts, verdict = _run(raw)
    assert [p.filename for p in facts.attachments] == ["a.exe"]
    assert verdict.rules[:1] == ("block-executables",)


@pytest.mark.parametrize(("boundary", "split_at"), [
    (b"boundary*=iso-8859-1''%E9", b"\xe9"),  # Thunderbird: the bytes, not their UTF-8
    (b'boundary="caf\xc3\xa9"', b"caf\xc3\xa9"),  # Python's email package: none
], ids=["rfc2231-latin1", "raw-utf8"])
def test_a_boundary_outside_ascii_is_malformed(boundary: bytes, split_at: bytes) -> None:
    # RFC 2046 allows ASCII alone, and readers split at such a boundary differently:
    # the parser split at the UTF-8 of the text, decoy lines where Thunderbird saw none.
    decoy = b"\xc3\xa9"
    raw = (
        HEAD + b"Content-Type: multipart/mixed; " + boundary + b"\r\n\r\n"
        b"--" + decoy + b"\r\nContent-Type: text/plain\r\n\r\n--" + split_at + b"\r\n"
        b'Content-Type: application/octet-stream; name="a.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + EXE_B64 + b"\r\n--" + split_at
        + b"--\r\n--" + decoy + b"--\r\n"
    )
    facts, verdict = _run(raw)
    assert {"malformed_content_type", "malformed"} <= facts.flags
    assert verdict.action is not Action.ACCEPT


def test_a_boundary_ending_in_a_space_is_malformed() -> None:
    # RFC 2046 forbids it. Python's email package strips it and splits at "--a", where
    # the executable is; Thunderbird strips the line's and splits at none; the parser
    # split at the decoy "--a " lines alone.
    raw = (
        HEAD + b'Content-Type: multipart/mixed; boundary="a "\r\n\r\n'
        b"--a \r\nContent-Type: text/plain\r\n\r\n--a\r\n"
        b'Content-Type: application/octet-stream; name="a.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + EXE_B64 + b"\r\n--a--\r\n--a --\r\n"
    )
    facts, verdict = _run(raw)
    assert {"malformed_content_type", "malformed"} <= facts.flags
    assert verdict.action is not Action.ACCEPT


def test_a_charset_also_given_in_rfc2231_form_is_read_as_thunderbird_reads_it() -> None:
    html = '<a href="javascript:alert(1)">x</a>'
    raw = (
        HEAD + b"Content-Type: text/html; charset=us-ascii; charset*=''utf-16le\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(html.encode("utf-16le")) + b"\r\n"
    )
    facts, verdict = _run(raw)
    assert facts.parts[0].charset == "utf-16le"
    assert html in facts.text  # body rules see the text a reader shows
    assert {"conflicting_parameter", "malformed"} <= facts.flags
    assert verdict.action is Action.QUARANTINE and verdict.rules == ("hold-broken-mime",)
    # Where the part is sanitized, the sanitizer reads it in the charset the reader uses.
    plan = RewritePlan(strip=(), sanitize_html=INBOUND.html_options)
    [change] = rewrite_body(facts, plan).changes
    assert isinstance(change, HtmlSanitized) and change.removed


def test_lone_cr_line_ends_do_not_hide_a_part() -> None:
    raw = (
        HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\nhi\r--B\r"
        b'Content-Type: application/octet-stream; name="a.exe"\r'
        b"Content-Transfer-Encoding: base64\r\r" + EXE_B64 + b"\r--B--\r\n--B--\r\n"
    )
    facts, verdict = _run(raw)
    assert {"bare_cr", "malformed"} <= facts.flags
    [text, exe] = facts.parts[1:]
    assert raw[text.body_start : text.body_end] == b"hi"
    assert raw[exe.body_start : exe.body_end] == EXE_B64
    assert (exe.filename, exe.detected_type) == ("a.exe", "application/x-dosexec")
    assert verdict.rules[:1] == ("hold-broken-mime",)


def test_a_lone_cr_in_a_header_section_starts_a_new_header() -> None:
    raw = HEAD + b"X-A: 1\rContent-Type: text/html\r\n\r\n<script>x</script>\r\n"
    facts = parse_message(raw, ENV)
    assert facts.parts[0].content_type == "text/html"
    assert {"bare_cr", "malformed"} <= facts.flags


def _script(disposition: bytes) -> bytes:
    return (
        HEAD + b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: " + disposition + b"\r\n\r\nWScript.Echo(1)\r\n"
    )


def test_a_comma_before_the_disposition_parameters_does_not_hide_a_name() -> None:
    facts, verdict = _run(_script(b'attachment, filename="invoice.js"'))
    assert facts.attachments[0].filenames == ("invoice.js",)
    assert verdict.rules[:1] == ("block-executables",)


def test_a_comment_after_an_unquoted_name_does_not_hide_it() -> None:
    facts, verdict = _run(_script(b"attachment; filename=invoice.js (x)"))
    assert facts.attachments[0].filenames == ("invoice.js (x)", "invoice.js")
    assert verdict.rules[:1] == ("block-executables",)


def test_a_nul_in_an_rfc2231_name_does_not_hide_it() -> None:
    facts, verdict = _run(_script(b"attachment; filename*=''invoice.js%00.pdf"))
    assert facts.attachments[0].filenames == ("invoice.js\x00.pdf", "invoice.js")
    assert verdict.rules[:1] == ("block-executables",)


def test_an_encoded_word_in_an_rfc2231_name_does_not_hide_it() -> None:
    facts, verdict = _run(_script(b"attachment; filename*=''=?utf-8?Q?invoice.js?="))
    assert facts.attachments[0].filenames == ("=?utf-8?Q?invoice.js?=", "invoice.js")
    assert verdict.rules[:1] == ("block-executables",)


def _named(header: bytes) -> bytes:
    return (
        HEAD + b"Content-Type: application/octet-stream\r\n" + header + b"\r\n\r\n"
        b"WScript.Echo(1)\r\n"
    )


def test_a_content_name_header_does_not_hide_a_name() -> None:
    facts, verdict = _run(_named(b"Content-Name: invoice.js"))
    assert facts.attachments[0].filenames == ("invoice.js",)
    assert verdict.rules[:1] == ("block-executables",)


def test_an_x_sun_data_name_header_does_not_hide_a_name() -> None:
    facts, verdict = _run(_named(b"X-Sun-Data-Name: =?utf-8?Q?invoice.js?="))
    assert facts.attachments[0].filenames == ("invoice.js",)
    assert verdict.rules[:1] == ("block-executables",)


_LINK = b'<a href="javascript:alert(1)">x</a>'


def _html_file(disposition: bytes) -> bytes:
    return (
        HEAD + b'Content-Type: application/octet-stream; name="invoice.html"\r\n' + disposition
        + b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(_LINK) + b"\r\n"
    )


@pytest.mark.parametrize(
    "disposition", [b"", b"Content-Disposition: inline\r\n"], ids=["no-disposition", "inline"]
)
def test_html_sent_as_octet_stream_is_sanitized_as_readers_render_it(disposition: bytes) -> None:
    facts, verdict = _run(_html_file(disposition))
    [part] = facts.parts
    assert part.content_type == "application/octet-stream" and facts.has_html
    assert "javascript:alert(1)" in facts.text
    assert [c.part for c in verdict.changes if isinstance(c, HtmlSanitized)] == [""]
    [body] = [e.body for e in verdict.edits if isinstance(e, ReplaceBody)]
    assert b"javascript:" not in base64.b64decode(body)


def test_html_sent_as_an_attachment_stays_an_attachment() -> None:
    facts, verdict = _run(_html_file(b"Content-Disposition: attachment\r\n"))
    assert facts.attachments and not facts.has_html
    assert not verdict.changes


def _uuencoded(name: bytes, data: bytes) -> bytes:
    lines = b"".join(binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45))
    return b"begin 644 " + name + b"\r\n" + lines.replace(b"\n", b"\r\n") + b"`\r\nend\r\n"


_NO_MIME = b"From: a@evil.test\r\nSubject: x\r\n\r\nHello, the invoice:\r\n\r\n"
_EXE = b"MZ\x90\x00" + bytes(200)


def test_a_binhex_executable_in_a_message_without_mime_is_seen() -> None:
    facts, verdict = _run(_NO_MIME + binhexed(b"invoice.exe", _EXE) + b"Regards\r\n")
    [part] = facts.attachments
    assert (part.filenames, part.detected_type) == (("invoice.exe",), "application/x-dosexec")
    assert (part.content_type, part.transfer_encoding) == ("application/mac-binhex40", "x-binhex")
    assert "uuencoded" in facts.flags
    assert verdict.rules[:1] == ("block-executables",)


def test_a_binhex_block_ends_at_its_first_short_line() -> None:
    block = binhexed(b"a.pdf", b"%PDF-1.7\n" + bytes(300))
    raw = _NO_MIME + block + b"Regards\r\n" + BEGIN + b"  \r\n:" + b"!" * 10 + b":\r\n"
    facts = parse_message(raw, ENV)
    first, second = facts.attachments
    assert (first.filename, first.detected_type) == ("a.pdf", "application/pdf")
    # Thunderbird closes the part after the line that is neither empty nor 64 long.
    assert raw[first.header_start : first.body_end] == block
    assert (second.filename, second.detected_type) == (None, None)  # decodes to nothing usable


def test_a_binhex_file_of_one_line_is_read_to_its_end() -> None:
    # Its one line is the short line that ends the block, and holds all its data.
    block = binhexed(b"invoice.js", b"WScript")
    assert block.count(b"\r\n") == 3
    facts, verdict = _run(_NO_MIME + block + b"Regards\r\n")
    assert facts.attachments[0].filenames == ("invoice.js",)
    assert verdict.rules[:1] == ("block-executables",)


def test_a_uuencoded_executable_in_a_message_without_mime_is_seen() -> None:
    facts, verdict = _run(_NO_MIME + _uuencoded(b"invoice.exe", _EXE) + b"Regards\r\n")
    [part] = facts.attachments
    assert (part.filenames, part.detected_type) == (("invoice.exe",), "application/x-dosexec")
    assert "uuencoded" in facts.flags
    assert verdict.rules[:1] == ("block-executables",)


# An ISO image (its volume descriptor at byte 32769) and a fixed VHD (its footer ends
# it): their first bytes name nothing.
_ISO = bytes(0x8000) + b"\x01CD001\x01" + bytes(2041)
_FIXED_VHD = bytes(4096) + b"conectix" + bytes(504)


_DISK_IMAGES = pytest.mark.parametrize(
    ("data", "detected"),
    [(_ISO, "application/x-iso9660-image"), (_FIXED_VHD, "application/x-vhd")],
    ids=["iso", "fixed-vhd"],
)


@_DISK_IMAGES
def test_a_uuencoded_disk_image_with_a_harmless_name_is_seen_by_its_content(
    data: bytes, detected: str
) -> None:
    facts, verdict = _run(_NO_MIME + _uuencoded(b"notes.txt", data) + b"Regards\r\n")
    [part] = facts.attachments
    assert (part.filenames, part.detected_type) == (("notes.txt",), detected)
    assert verdict.rules[:1] == ("block-executables",)


def _uuencoded_in_lines(name: bytes, data: bytes, sizes: list[int]) -> bytes:
    """``data`` uuencoded in lines of the ``sizes`` given, in turn, as a sender may."""
    lines, at = [], 0
    for size in itertools.cycle(sizes):
        if at >= len(data):
            break
        lines.append(binascii.b2a_uu(data[at : at + size]).rstrip(b"\n"))
        at += size
    return b"begin 644 " + name + b"\r\n" + b"\r\n".join(lines) + b"\r\n`\r\nend\r\n"


@_DISK_IMAGES
def test_a_disk_image_uuencoded_in_lines_of_another_length_is_seen(data: bytes,
                                                                    detected: str) -> None:
    # Each line says how many bytes it holds: the marks are where those counts put them.
    block = _uuencoded_in_lines(b"notes.txt", data, [30])
    assert _run(_NO_MIME + block)[0].attachments[0].detected_type == detected
    # Characters a line's count does not ask for are not its bytes (blanks, say).
    padded = _uuencoded(b"notes.txt", data).replace(b"\r\n", b"   \r\n")
    assert _run(_NO_MIME + padded)[0].attachments[0].detected_type == detected


def test_a_disk_image_uuencoded_in_lines_of_irregular_length_is_known_by_its_name() -> None:
    # The line that holds an ISO image's mark is found only where the lines before it
    # are alike, in 32 runs at most (walking thousands of lines, for each of a thousand
    # blocks, would not bound the time a message takes); a VHD's footer is read back
    # from the end.
    sizes = [45, 7, 30, 1, 44]
    facts, verdict = _run(_NO_MIME + _uuencoded_in_lines(b"notes.iso", _ISO, sizes))
    assert facts.attachments[0].detected_type is None
    assert verdict.rules[:1] == ("block-executables",)
    facts, _ = _run(_NO_MIME + _uuencoded_in_lines(b"notes.txt", _FIXED_VHD, sizes))
    assert facts.attachments[0].detected_type == "application/x-vhd"


def _with_lines_skipped(block: bytes, around: bytes, between: bytes = b"") -> bytes:
    """A uuencoded ``block`` with lines Thunderbird skips or decodes to nothing (empty,
    or a length character that says none) after its begin line and before its end
    line (``around``), and after each line of its data (``between``)."""
    begin, _, rest = block.partition(b"\r\n")
    data = rest.removesuffix(b"`\r\nend\r\n").replace(b"\r\n", b"\r\n" + between)
    return begin + b"\r\n" + around + data + around + b"end\r\n"


_SKIPPED = pytest.mark.parametrize(
    "lines", [b"\r\n", b"\r\n" * 40, b"\n\r\r\n \r\n`\r\n" * 20, b"\r\n" * 1_000_000],
    ids=["one-empty", "forty-empty", "mixed-and-zero-length", "a-million-empty"],
)


@_SKIPPED
def test_lines_a_uuencoded_file_decodes_to_nothing_do_not_hide_its_head(lines: bytes) -> None:
    block = _with_lines_skipped(_uuencoded(b"invoice.pdf", _EXE), lines, lines[:200])
    facts, verdict = _run(_NO_MIME + block + b"Regards\r\n")
    [part] = facts.attachments
    assert (part.filenames, part.detected_type) == (("invoice.pdf",), "application/x-dosexec")
    assert verdict.rules[:1] == ("block-executables",)


@_DISK_IMAGES
@_SKIPPED
def test_lines_a_uuencoded_file_decodes_to_nothing_do_not_hide_its_marks(
    data: bytes, detected: str, lines: bytes
) -> None:
    # Thunderbird skips empty lines and decodes those whose count says none to no byte:
    # an empty line after the begin line hid an ISO image's mark, and before the end
    # line a VHD's footer, read from lines counted from there.
    block = _with_lines_skipped(_uuencoded(b"notes.txt", data), lines)
    facts, verdict = _run(_NO_MIME + block + b"Regards\r\n")
    [part] = facts.attachments
    assert (part.filenames, part.detected_type) == (("notes.txt",), detected)
    assert verdict.rules[:1] == ("block-executables",)


def _spaced(block: bytes, every: int, lines: bytes) -> bytes:
    """``block`` with ``lines`` after every ``every``th of its lines."""
    rows = block.splitlines(keepends=True)
    return b"".join(row + lines * (at % every == every - 1) for at, row in enumerate(rows))


@_DISK_IMAGES
@pytest.mark.parametrize(("every", "lines"), [
    (1, b"\r\n"), (1, b"\r\n" * 3), (30, b"\r\n \r\n"), (100, b"\r\n" * 100_000)],
    ids=["double-spaced", "triple-empty", "now-and-then", "long-runs-now-and-then"])
def test_lines_that_decode_to_nothing_between_a_uuencoded_files_lines_hide_no_mark(
    data: bytes, detected: str, every: int, lines: bytes
) -> None:
    # The line with an ISO image's mark is found run by run of lines alike: an empty
    # line between them hid it.
    block = _spaced(_uuencoded(b"notes.txt", data), every, lines)
    facts, verdict = _run(_NO_MIME + block + b"Regards\r\n")
    [part] = facts.attachments
    assert (part.filenames, part.detected_type) == (("notes.txt",), detected)
    assert verdict.rules[:1] == ("block-executables",)


@_DISK_IMAGES
@pytest.mark.parametrize("runs", [False, True], ids=["bytes", "runs"])
def test_a_binhexed_disk_image_with_a_harmless_name_is_seen_by_its_content(
    data: bytes, detected: str, runs: bool
) -> None:
    # Run-length coding puts each byte where those before it say: the text is decoded
    # from its start up to the mark (a run codes 255 of an ISO's zeros in 4 characters).
    facts, verdict = _run(_NO_MIME + binhexed(b"notes.txt", data, runs) + b"Regards\r\n")
    [part] = facts.attachments
    assert (part.filenames, part.detected_type) == (("notes.txt",), detected)
    assert verdict.rules[:1] == ("block-executables",)


def test_a_binhexed_disk_image_past_the_text_decoded_is_known_by_its_name() -> None:
    # A fixed VHD's footer ends it: past some 750 KB of bytes no run codes, it is not
    # read, however large the file (its name still tells).
    data = random.Random(5).randbytes(800_000) + _FIXED_VHD
    facts, verdict = _run(_NO_MIME + binhexed(b"notes.vhd", data) + b"Regards\r\n")
    assert facts.attachments[0].detected_type is None
    assert verdict.rules[:1] == ("block-executables",)
    facts, _ = _run(_NO_MIME + binhexed(b"notes.vhd", bytes(4_000_000) + _FIXED_VHD, True))
    assert facts.attachments[0].detected_type == "application/x-vhd"


# BinHex blocks that cost their reads all they may: one whose head is runs of nothing
# (its read stops at 4,096 0x90s), one whose file claims 4 GiB (the footer's read
# decodes 1 MiB of text).
_RUNS_DECOY = binhex_block(b"\x01" + b"\x90\x01" * 5_000)
_TEXT_DECOY = binhex_block(header(b"a", 2**32 - 1) + bytes(800_000))


@pytest.mark.parametrize(("decoy", "decoys"), [
    pytest.param(_RUNS_DECOY, uuencode.Budget().runs // 4096, id="runs"),
    pytest.param(_TEXT_DECOY, uuencode.Budget().text // 2**20, id="text"),
])
def test_binhex_reads_past_the_message_budget_are_malformed_not_clean(decoy: bytes,
                                                                     decoys: int) -> None:
    # The message's BinHex reads share one budget: a thousand blocks each read up to its
    # limits took seconds. Past it, the files after are not read, and so not taken as clean.
    def run(count: int) -> tuple[MessageFacts, Verdict]:
        return _run(_NO_MIME + (decoy + b"x\r\n") * count + binhexed(b"notes.txt", _ISO))
    facts, verdict = run(decoys - 1)
    assert facts.attachments[-1].detected_type == "application/x-iso9660-image"
    assert "unscanned_text" not in facts.flags
    assert verdict.rules[:1] == ("block-executables",)
    facts, verdict = run(decoys)
    assert facts.attachments[-1].detected_type is None
    assert {"unscanned_text", "malformed"} <= facts.flags
    assert verdict.rules[:1] == ("hold-broken-mime",)


def test_a_uuencoded_script_in_a_quoted_printable_text_part_is_seen() -> None:
    text = b"Hello\r\n" + _uuencoded(b"invoice.js", b"WScript.Echo(1)\r\n")
    raw = (
        HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + binascii.b2a_qp(text).replace(b"begin", b"=62eg=\r\nin") + b"\r\n--B--\r\n"
    )
    facts, verdict = _run(raw)
    assert [p.filenames for p in facts.attachments] == [("invoice.js",)]
    assert verdict.rules[:1] == ("block-executables",)


def test_a_uuencoded_file_a_rule_strips_holds_the_message() -> None:
    facts, verdict = _run(_NO_MIME + _uuencoded(b"invoice.docm", b"PK\x03\x04" + bytes(60)))
    assert [p.filenames for p in facts.attachments] == [("invoice.docm",)]
    # It is no MIME part that could be replaced by a notice: the message is held instead.
    assert verdict.rules[:1] == ("strip-macro-documents",)
    assert verdict.decision == Quarantine(
        "rewrite failed: a uuencoded file cannot be changed apart from its text"
    )
    assert not any(isinstance(e, ReplaceBody) for e in verdict.edits)


def test_uuencoded_html_that_cannot_be_sanitized_holds_the_message() -> None:
    facts, verdict = _run(_NO_MIME + _uuencoded(b"invoice.html", _LINK))
    assert facts.has_html
    assert verdict.decision == Quarantine(
        "rewrite failed: a uuencoded file cannot be changed apart from its text"
    )


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_a_uuencoded_file_at_the_end_of_a_long_encoded_text_is_seen(encoding: str) -> None:
    # Encoded text is searched to its end, as 7bit text is: a 9 MB log file (past the
    # 8 MiB searched before, then flagged unscanned_text and held) is read whole.
    text = b"2026-12-07 11:33:19 INFO worker-3 request handled in 12 ms\r\n"
    body = text * (9_000_000 // len(text)) + _uuencoded(b"invoice.exe", _EXE)
    encoded = base64.encodebytes(body) if encoding == "base64" else binascii.b2a_qp(body)
    raw = HEAD + f"Content-Transfer-Encoding: {encoding}\r\n\r\n".encode() + encoded
    assert len(encoded) > 8 * 2**20
    facts, verdict = _run(raw)
    assert [p.filenames for p in facts.attachments] == [("invoice.exe",)]
    assert "unscanned_text" not in facts.flags
    assert verdict.rules[:1] == ("block-executables",)


def test_base64_that_goes_on_after_its_padding_is_held() -> None:
    # Python's decoder stops at "PA==" (one "<"); a reader that decodes each group
    # of four on its own reads on and renders the <img>: the part is not what we saw.
    hidden = base64.b64encode(b"<img src=x onerror=alert(1)>")
    raw = (
        HEAD + b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"PA==\r\n" + hidden + b"\r\n"
    )
    facts, verdict = _run(raw)
    assert {"bad_base64", "malformed"} <= facts.flags
    assert verdict.action is Action.QUARANTINE and verdict.rules == ("hold-broken-mime",)


def test_base64_padded_piece_by_piece_is_read_as_the_reader_that_reads_on_reads_it() -> None:
    # "UEs=" is "PK"; a reader that decodes each group of four on its own goes on to
    # the rest of a ZIP's header (the one that stops at the padding reads the start of
    # that). Read as one run without its "=", it was neither: bytes no reader sees.
    archive = b"PK\x03\x04\x14\x00" + b"\x00" * 20 + b"\x05\x00\x00\x00a.exe"
    pieces = base64.b64encode(archive[:2]) + b"\r\n" + base64.b64encode(archive[2:])
    facts = parse_message(_exe_part(pieces), ENV)
    assert facts.parts[0].detected_type == "application/zip" and "bad_base64" in facts.flags
    assert transfer.decode(pieces, "base64") == archive
    hidden = base64.b64encode(b"<img src=x onerror=alert(1)>")
    assert transfer.decode(b"PA==\r\n" + hidden, "base64") == b"<<img src=x onerror=alert(1)>"


def test_text_in_a_charset_readers_do_not_share_is_flagged() -> None:
    # Python's johab reads the lead byte and "w" as one character, hiding the word
    # "wire" from a body rule; a reader without johab shows it.
    def text_part(charset: str, body: bytes) -> MessageFacts:
        raw = HEAD + f"Content-Type: text/plain; charset={charset}\r\n\r\n".encode() + body
        return _run(raw + b"\r\n")[0]

    hidden = text_part("johab", b"please \xd9wire the money")
    assert "unshared_charset" in hidden.flags and "wire" not in hidden.text
    shared = text_part("windows-1252", b"please wire the money, caf\xe9")
    assert "unshared_charset" not in shared.flags and "wire" in shared.text


def test_hostile_html_under_a_well_formed_but_bogus_signature_is_held() -> None:
    raw = (
        HEAD + b'Content-Type: multipart/signed; protocol="application/pgp-signature"; '
        b"boundary=S\r\n\r\n--S\r\nContent-Type: text/html\r\n\r\n"
        b'<a href="javascript:alert(1)">x</a><script>alert(1)</script>\r\n'
        b"--S\r\nContent-Type: application/pgp-signature\r\n\r\nnot a signature\r\n--S--\r\n"
    )
    facts, verdict = _run(raw)
    assert facts.parts[1].in_signed
    assert isinstance(verdict.decision, Quarantine)
    assert verdict.decision.reason.startswith("rewrite failed: a signed part would have to change")
    assert "rewrite_failed" in verdict.flags  # for the audit row: no rule it lists holds it


def _yencoded(name: bytes, data: bytes, part: bytes = b"") -> bytes:
    """A yEnc block of ``data`` named ``name``, its lines after ``part``."""
    return (
        b"=ybegin line=128 size=" + str(len(data)).encode() + b" name=" + name + b"\r\n"
        + part + yencoded(data) + b"\r\n=yend size="
        + str(len(data)).encode() + b"\r\n"
    )


def test_a_yencoded_executable_in_a_message_without_mime_is_seen() -> None:
    facts, verdict = _run(_NO_MIME + _yencoded(b"scan 01.pdf", _EXE) + b"Regards\r\n")
    [part] = facts.attachments
    assert part.filenames == ("scan 01.pdf",) and part.transfer_encoding == "x-yenc"
    assert part.detected_type == "application/x-dosexec"  # found by its content
    assert verdict.rules[:1] == ("block-executables",)


# Disk images whose bytes yEnc escapes (to NUL, CR and "="), before their marks and after.
_ESCAPED_ISO = b"\xd6\x00\xe3\x13" * 0x2000 + b"\x01CD001\x01" + b"\xd6" * 2041
_ESCAPED_VHD = b"\xd6\x13" * 2048 + b"conectix" + b"\xd6\x00\xe3" * 168


@pytest.mark.parametrize(
    ("data", "detected"),
    [(_ESCAPED_ISO, "application/x-iso9660-image"), (_ESCAPED_VHD, "application/x-vhd")],
    ids=["iso", "fixed-vhd"],
)
@pytest.mark.parametrize("part", [b"", b"=ypart begin=1 end=40000\r\n"], ids=["whole", "part"])
def test_a_yencoded_disk_image_with_a_harmless_name_is_seen_by_its_content(
    data: bytes, detected: str, part: bytes
) -> None:
    facts, verdict = _run(_NO_MIME + _yencoded(b"notes.txt", data, part) + b"Regards\r\n")
    [attachment] = facts.attachments
    assert (attachment.filenames, attachment.detected_type) == (("notes.txt",), detected)
    assert verdict.rules[:1] == ("block-executables",)


@pytest.mark.parametrize(
    "value",
    [
        b"CEO <ceo@\r\n example.com>",  # folding after the @, as RFC 5322 allows
        b"< ceo @ example.com >",
        b"ceo@(a comment)example.com",
        b"<ceo@example.com(x)>",
        b"(IT <it@evil.test>) <ceo@example.com>",  # an address in a comment
        b'"IT <it@evil.test>" <ceo@example.com>',  # an address in a quoted name
        b"=?utf-8?q?IT_=3Cit@evil.test=3E?= <ceo@example.com>",  # one in an encoded word
    ],
)
def test_the_from_address_is_the_one_readers_show(value: bytes) -> None:
    facts = parse_message(b"From: " + value + b"\r\nSubject: x\r\n\r\nhi\r\n", ENV)
    assert facts.from_address == "ceo@example.com"
    assert "malformed" not in facts.flags


@pytest.mark.parametrize(
    "value", [b"<", b"Mallory <mallory@", b"a <b@", b':<"', b"Mallory <mallory@[evil.example>"]
)
def test_a_from_header_the_strict_parser_fails_on_is_held(value: bytes) -> None:
    # Python's address parser raises IndexError or AttributeError on these.
    facts, verdict = _run(b"From: " + value + b"\r\nSubject: x\r\n\r\nhi\r\n")
    assert {"ambiguous_from", "malformed"} <= facts.flags
    assert "parser_error" not in facts.flags
    assert verdict.action is Action.QUARANTINE and verdict.rules == ("hold-broken-mime",)


def test_a_from_header_readers_may_read_two_ways_is_held() -> None:
    facts, verdict = _run(b"From: alice@example.com)<bob@evil.test>\r\nSubject: x\r\n\r\nhi\r\n")
    assert {"ambiguous_from", "malformed"} <= facts.flags
    assert verdict.action is Action.QUARANTINE and verdict.rules == ("hold-broken-mime",)


@pytest.mark.parametrize(
    "headers",
    [
        b"From: ceo@example.com\r\nFrom: it@evil.test\r\nSubject: x\r\n",
        b"From: a@evil.test\r\nSubject: lunch\r\nSubject: password reset\r\n",
        b"From: a@evil.test\r\nSubject: lunch\r\nsubject: password reset\r\n",
    ],
)
def test_a_second_from_or_subject_is_held(headers: bytes) -> None:
    # Rules read the first; some mail readers show the last.
    facts, verdict = _run(headers + b"\r\nhi\r\n")
    assert {"duplicate_header", "malformed"} <= facts.flags
    assert verdict.action is Action.QUARANTINE and verdict.rules == ("hold-broken-mime",)


def test_one_from_and_one_subject_are_not_duplicates() -> None:
    facts = parse_message(b"From: a@example.com\r\nSubject: x\r\nTo: b@example.com\r\n"
                          b"To: c@example.com\r\n\r\nhi\r\n", ENV)
    assert "duplicate_header" not in facts.flags and "malformed" not in facts.flags


@pytest.mark.parametrize(
    ("name", "held"),
    [
        ("invoice\u202efdp.js", True),  # shown as "invoicesj.pdf"
        ("=?utf-8?q?invoice=E2=80=AEfdp.js?=", True),  # the same, RFC 2047-encoded
        ("\u202dreport.pdf", True),
        ("\u05d3\u05d5\u05d7\u200f.pdf", False),  # a Hebrew name with a right-to-left mark
    ],
)
def test_a_file_name_shown_in_another_order_is_held(name: str, held: bool) -> None:
    raw = (
        b"From: a@evil.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
        b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\""
        + name.encode() + b"\"\r\n\r\n%PDF-1.7\r\n--b--\r\n"
    )
    facts, verdict = _run(raw)
    assert ("bidi_override" in facts.flags) is held
    assert (verdict.rules == ("hold-broken-mime",)) is held


def test_a_senders_own_x_external_header_is_replaced() -> None:
    raw = b"From: a@evil.test\r\nSubject: x\r\nX-External: no\r\n\r\nhi\r\n"
    facts, verdict = _run(raw)
    assert facts.header_values("X-External") == ("no",)
    assert verdict.rules == ("tag-external",)
    delivered = parse_message(apply_edits(raw, verdict), ENV)
    assert delivered.header_values("X-External") == ("yes",)
