"""The edits a rewrite splices into a message, each replacing the bytes of one part.

A stripped attachment's slot (its headers and body) gets a short text/plain notice
naming the file, its decoded size and SHA-256; under a multipart/alternative (but
first there) the notice moves to the front, since readers show the last alternative
they can show, which it would otherwise be. A sanitized HTML part
(``MimePart.is_html``: text/html, or an inline octet-stream named as HTML)
keeps its headers; its body is re-encoded in its own transfer encoding and
charset (characters the charset lacks become HTML character references, so
the charset parameter never changes). The exceptions, their Content-Transfer-Encoding
changed to say so: a 7bit, 8bit or binary part with a line past SMTP's 998 octets and no
space to break it at goes quoted-printable, and a UTF-16 part in any but base64
goes in base64, cleaned or not (hops rewrite the line ends of the others; plain
UTF-16 text is no part of a rewrite: shifted, it makes no markup, and re-encoding would
change mail no policy changes, its DKIM signature broken). Line
ends follow the original's, set in the text before it is encoded; the new bytes
must decode, by the part's label, to that text, or :class:`RewriteError` is raised
(the label is in a header section that stays). A top-level attachment gets the
notice as body (a message holding it, under message/rfc822 or message/global); its
header section stays, but that a file of another type than text takes the notice's
type and loses its Content-Disposition (``PartEdit.retyped``): readers offered the
notice as the file, which did not open, and showed no text; and that a notice its
transfer encoding cannot carry (UTF-16 under a 7bit or 8bit body) goes in base64.
An HTML part stays untouched only when the sanitizer gives it back as it is (what
it counted as removed never decides: see :mod:`postwarden_policies.sanitize`), or,
signed, when it would change only harmlessly (:func:`kept_signed`).
Files inside a TNEF ``winmail.dat`` are replaced by notices in the stream
(:mod:`postwarden_policies.tnefrewrite`), re-encoded as the part's body was.

No line of a rewritten part starts with "--", so none reads as a boundary
delimiter (RFC 2046 forbids even its prefix): in sanitized HTML such a dash is
written ``&#45;``, and a quoted-printable line starting with "-" (a line break
falls where the sender's text puts it) starts with ``=2D``.

Exceptions::

    Exception
     └── RewriteError
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass

from postwarden_policies import tnefparts, tnefrewrite, transfer
from postwarden_policies.charsets import (
    decode_bytes,
    html_charset,
    is_utf16,
    known_alias,
    read_as_readers,
    readers_utf16,
)
from postwarden_policies.facts import MessageFacts, MimePart
from postwarden_policies.html_allowlist import HtmlOptions
from postwarden_policies.htmllines import past_line_limit, within_line_limit
from postwarden_policies.mimetree import MESSAGE_TYPES
from postwarden_policies.sanitize import removed_whole, sanitize_html
from postwarden_policies.signedhtml import only_harmless_changes
from postwarden_policies.verdicts import AttachmentStripped, Change, HtmlSanitized, SignedHtmlKept

__all__ = [
    "PartEdit", "RewriteError", "carrier_edit", "kept_signed", "sanitize_edit", "strip_edit",
    "tnef_edit", "with_transfer_encoding",
]

# Two dashes at the start of a line (after LF, or a CR, which parsers take for a
# line end too): how every boundary delimiter begins.
_LINE_DASHES = re.compile(r"(?<![^\r\n])--")
# Transfer encodings that carry bytes outside ASCII: any other (7bit, none, one unknown) not.
_EIGHT_BIT_SAFE = frozenset({"8bit", "binary", "base64", "quoted-printable"})
# A Content-Transfer-Encoding field, its continuation lines with it.
_CTE_FIELD = re.compile(rb"^content-transfer-encoding[ \t]*:.*\n(?:[ \t].*\n)*",
                        re.IGNORECASE | re.MULTILINE)


class RewriteError(Exception):
    """The rewritten message did not re-parse as intended; nothing may be applied."""


@dataclass(frozen=True, slots=True)
class PartEdit:
    """``data`` in place of the message's bytes ``[start:end)``: the edit of ``part``."""

    start: int
    end: int
    data: bytes
    part: MimePart
    whole_slot: bool  # headers and body replaced (a stripped attachment)
    members: tuple[MimePart, ...] = ()  # files of its TNEF replaced by notices
    # Where ``data`` goes instead, its delimiter line after it, when it moves: then
    # ``[start:end)`` (the part and the delimiter line before it) goes. See strip_edit.
    moved_to: int | None = None
    # A top-level file's notice, whose header section must say text/plain in UTF-8.
    retyped: bool = False
    # The Content-Transfer-Encoding a top-level part's header section must now say (a
    # part under a multipart has its new header section in ``data``, ``whole_slot``).
    transfer_encoding: str | None = None


def _decoded(facts: MessageFacts, part: MimePart) -> bytes:
    return transfer.decode(facts.raw[part.body_start : part.body_end], part.transfer_encoding)


def _with_tail(original: bytes, encoded: bytes) -> bytes:
    """Keep the line breaks the original body ended with."""
    tail = original[len(original.rstrip(b"\r\n")) :]
    return encoded.rstrip(b"\r\n") + tail


def _encode(data: bytes, cte: str, newline: bytes, width: int = 76) -> bytes:
    """``data`` in ``cte``, and in quoted-printable no line starting with "-".

    A line that starts with "--" and a boundary would end the part early (RFC 2046
    forbids even the prefix), and quoted-printable breaks lines where the 76th
    character falls, which a sender chooses. "=2D" is the same dash; a line it
    makes too long is broken again (its rest is checked in turn).
    """
    encoded = transfer.encode(data, cte, newline, width)
    if cte != "quoted-printable" or not (encoded.startswith(b"-") or b"\n-" in encoded):
        return encoded
    lines: list[bytes] = []
    for written in encoded.split(newline):
        line = written
        while line.startswith(b"-"):
            line = b"=2D" + line[1:]
            if len(line) <= transfer.QP_LINE:
                break
            head, line = transfer.qp_split(line)
            lines.append(head)
        lines.append(line)
    return newline.join(lines)


def _stripped(part: MimePart, data: bytes, reason: str) -> tuple[bytes, AttachmentStripped]:
    """The notice that takes the place of ``part`` (its bytes ``data``), and the change."""
    digest = hashlib.sha256(data).hexdigest()
    name = part.filename or "(unnamed)"
    shown = "".join(ch if ch.isprintable() else "?" for ch in name)
    notice = (
        f'The attachment "{shown}" ({len(data)} bytes, SHA-256 {digest}) '
        "was removed by the mail filter.\n"
    ).encode()
    change = AttachmentStripped(
        part=part.path, filename=name, size=len(data), sha256=digest, reason=reason
    )
    return notice, change


def _as_labelled(notice: bytes, part: MimePart) -> tuple[bytes, str]:
    """The notice for a top-level part, whose header section stays, and the transfer
    encoding it goes in: escaped in HTML; in a text part's labelled charset, us-ascii
    where it names none (RFC 2045's default), UTF-8 in a file (the file name's letters
    as "?" where that lacks them, Python does not know it, or a 7bit body cannot carry
    them); in the part's transfer encoding, else base64 (a UTF-16 label on a 7bit or
    8bit body: the message was held); RewriteError where no reader would read it so."""
    text = notice.decode()
    if part.content_type == "text/html":  # a file name is no markup
        text = html.escape(text, quote=False)
    charset = "utf-8"
    if part.content_type.startswith("text/"):  # readers read "unicode" as UTF-16LE
        charset = readers_utf16(part.charset) or part.charset or "us-ascii"
    for cte in dict.fromkeys((part.transfer_encoding, "base64")):
        for shown, codec in ((text, charset),
                             (text.encode("ascii", "replace").decode(), "ascii")):
            try:
                encoded = shown.encode(codec)
            except (LookupError, ValueError):  # unknown to Python, or lacking the letters
                continue
            if cte in ("7bit", "8bit", "binary") and b"\0" in encoded:
                continue  # as it is, a NUL byte ends no reader's text well
            if cte not in _EIGHT_BIT_SAFE and not encoded.isascii():
                continue
            if decode_bytes(encoded, charset, set()) == shown:
                return encoded, cte
    raise RewriteError("the notice would not read as its part's charset says")


def strip_edit(facts: MessageFacts, part: MimePart, reason: str) -> tuple[PartEdit, Change]:
    notice, change = _stripped(part, _decoded(facts, part), reason)
    nl = facts.newline
    original = facts.raw[part.body_start : part.body_end]
    if part.parent is None:  # the top-level header section stays, but for header edits
        cte = part.transfer_encoding
        # A top-level message keeps its header section: its notice goes as a message.
        if part.content_type in MESSAGE_TYPES:
            notice = _notice_entity(notice, nl)
        else:
            notice, cte = _as_labelled(notice, part)
        body = _with_tail(original, _encode(notice, cte, nl))
        retyped = not part.content_type.startswith(("text/", *MESSAGE_TYPES))
        recoded = cte if cte != part.transfer_encoding else None
        return PartEdit(part.body_start, part.body_end, body, part, False,
                        retyped=retyped, transfer_encoding=recoded), change
    slot = _with_tail(original, _notice_entity(notice, nl))
    siblings = [p for p in facts.parts if p.parent == part.parent]
    alternative = facts.parts[part.parent].content_type == "multipart/alternative"
    if alternative and part.index != siblings[0].index:
        # Readers show the last alternative they can, and every one can show a text
        # notice: in the file's place it would hide the body. First, it hides nothing.
        before = siblings[siblings.index(part) - 1]
        edit = PartEdit(before.body_end, part.body_end, slot, part, True,
                        moved_to=siblings[0].header_start)
    else:
        edit = PartEdit(part.header_start, part.body_end, slot, part, True)
    return edit, change


def _notice_entity(notice: bytes, nl: bytes) -> bytes:
    """The notice as a text entity, headers and body: in the slot of a stripped part,
    or as the message in a top-level message/rfc822 or message/global."""
    return nl.join(
        (
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Transfer-Encoding: quoted-printable",
            b"Content-Disposition: inline",
            b"",
            _encode(notice, "quoted-printable", nl).rstrip(b"\r\n"),
        )
    )


def _reencoded(original: bytes, new: bytes, cte: str, newline: bytes) -> bytes:
    """``new`` in the transfer encoding and style (base64 line length, final line
    breaks) of the body ``original``."""
    width = transfer.base64_line_length(original)
    return _with_tail(original, _encode(new, cte, newline, width))


def _with_references(text: str, charset: str) -> str:
    """``text`` with each character ``charset`` lacks as an HTML character reference,
    so the part keeps its charset parameter; so too each one Python writes as bytes
    that readers read as another (Shift_JIS's "£", which readers read as windows-31j,
    where those bytes are "￡")."""
    lacking: dict[int, str] = {}
    for char in set(text):
        try:
            kept = decode_bytes(char.encode(charset), charset, set()) == char
        except UnicodeEncodeError:
            kept = False
        if not kept:
            lacking[ord(char)] = f"&#{ord(char)};"
    return text.translate(lacking)


def kept_signed(facts: MessageFacts, part: MimePart, options: HtmlOptions,
                change: Change) -> SignedHtmlKept | None:
    """The report of the signed HTML ``part`` going out as it came though sanitizing would
    change it (``change``, its :func:`sanitize_edit`), when only in harmless ways
    (:mod:`postwarden_policies.signedhtml`); None else. Read by the label it has: without
    one, readers may read a ``<meta>`` tag's, and UTF-16 a hop may shift into markup."""
    label = known_alias(part.charset)
    data = _decoded(facts, part)
    if not isinstance(change, HtmlSanitized) or not label or is_utf16(label) \
            or not read_as_readers(label, data):
        return None
    unknown: set[str] = set()
    html = decode_bytes(data, label, unknown)
    if unknown or not only_harmless_changes(html, label, options):
        return None
    return SignedHtmlKept(part.path, change.removed)


def sanitize_edit(
    facts: MessageFacts, part: MimePart, options: HtmlOptions
) -> tuple[PartEdit, Change] | None:
    original = facts.raw[part.body_start : part.body_end]
    data = _decoded(facts, part)
    unknown: set[str] = set()
    label = known_alias(part.charset)  # the part's label, as Python can look it up
    read_by = known_alias(html_charset(part.charset, data))  # the label, else a <meta> tag's
    if part.transfer_encoding not in ("base64", "quoted-printable") and is_utf16(read_by):
        data = transfer.utf16_as_sent(data)
    # Readers that ignore the <meta> tag (Thunderbird reads only its http-equiv form)
    # read the part as labelled with nothing.
    readable = read_as_readers(read_by, data) and (
        bool(part.charset) or read_as_readers(None, data))
    # UTF-16 in lines: a hop may write a line end as CRLF or LF (Postfix adds a CR
    # before a lone LF, local delivery drops it), and a 0x0D or 0x0A byte can be half
    # a character. One byte more or less shifts the rest: CJK text read as markup,
    # "<img onerror=...>" we never saw. It goes out in base64, which no hop rewrites,
    # cleaned or not (its bytes as they came, then).
    to_base64 = readable and part.transfer_encoding != "base64" and is_utf16(read_by)
    if readable:
        html = decode_bytes(data, read_by, unknown)
        clean, removed = sanitize_html(html, options)
        if clean == html:  # within the allowlist as it is
            if not to_base64:
                return None
            unchanged = HtmlSanitized(part.path, (), len(data), len(data))
            return _recoded(facts, part, data, "base64"), unchanged
        # nh3 decodes "&#45;&#45;B" in text and attribute values, its only output
        # where a line can start; written as a reference again, no delimiter of the
        # enclosing multipart can start a line of this part.
        if clean.startswith("--") or "\n--" in clean or "\r--" in clean:  # sre is slower
            clean = _LINE_DASHES.sub("&#45;-", clean)
        # nh3 writes every line end as LF. Convert in the text, never in the encoded
        # bytes: in UTF-16 a 0x0A byte can be half a character.
        if "\r\n" in html:
            clean = clean.replace("\n", "\r\n")
    else:
        clean, removed = removed_whole("unsafe_charset")  # see read_as_readers
    if readable:
        charset = label if not unknown and label else "us-ascii"
    else:
        charset = _notice_charset(part.charset)
    cte = "base64" if to_base64 or is_utf16(charset) else part.transfer_encoding
    text = _with_references(clean, charset)
    if cte not in _EIGHT_BIT_SAFE and not text.encode(charset).isascii():
        charset, text = "us-ascii", _with_references(clean, "us-ascii")  # stays 7-bit clean
    if cte in ("7bit", "8bit", "binary"):  # lines travel as they are (Postfix has no
        # BINARYMIME: binary goes as 8bit does), within SMTP's limit
        text, cte = _within_smtp_lines(text, charset, cte)
    new = text.encode(charset)
    # The reader decodes the bytes by the part's label (unchanged): they must read
    # as the text we cleaned. ASCII under a label such as utf-16 does not, and the
    # label is in a header section we keep, so such a part is held.
    if readable and decode_bytes(new, label or "utf-8", set()) != text:
        raise RewriteError("a sanitized part would not read as it was cleaned")
    change = HtmlSanitized(
        part=part.path, removed=removed, bytes_before=len(data), bytes_after=len(new)
    )
    if cte != part.transfer_encoding:
        return _recoded(facts, part, new, cte), change
    if new == data:  # nh3 changed nothing but line ends
        return None
    body = _reencoded(original, new, cte, facts.newline)
    if body == original:  # nor anything the bytes keep: tag whitespace broken as it was
        return None
    return PartEdit(part.body_start, part.body_end, body, part, False), change


def carrier_edit(facts: MessageFacts, carrier: MimePart, content: bytes) -> PartEdit:
    """The edit giving ``carrier`` (an encoded message/rfc822 or message/global) the
    message ``content`` as its body, in its own transfer encoding and style: a reader
    decodes it as it decoded the original; a body that would not decode to ``content``
    (line ends quoted-printable cannot keep) raises :class:`RewriteError`."""
    original = facts.raw[carrier.body_start : carrier.body_end]
    body = _reencoded(original, content, carrier.transfer_encoding, facts.newline)
    if transfer.decode(body, carrier.transfer_encoding) != content:
        raise RewriteError("a rewritten message would not survive its transfer encoding")
    return PartEdit(carrier.body_start, carrier.body_end, body, carrier, False)


def _notice_charset(label: str | None) -> str:
    """The charset of the notice in place of HTML readers read otherwise: ASCII, but
    under a UTF-16 label readers know, where ASCII read as CJK text, the UTF-16 they
    read it as (then in base64: the notice holds NUL bytes)."""
    return readers_utf16(label) or "us-ascii"


def _within_smtp_lines(text: str, charset: str, cte: str) -> tuple[str, str]:
    """The text of a 7bit, 8bit or binary part, and its transfer encoding, with no line past
    SMTP's limit: broken at spaces where HTML allows it, else (a long URL, say) the
    part goes quoted-printable, whose soft line breaks readers join. Left long,
    Postfix's SMTP client broke the line itself (with CRLF and a space) wherever the
    limit fell: inside a URL, a tag, a word."""
    newline = "\r\n" if "\r\n" in text else "\n"
    if not past_line_limit(text, charset, newline):
        return text, cte
    broken = within_line_limit(text, charset, newline)
    if past_line_limit(broken, charset, newline):
        return text, "quoted-printable"
    return broken, cte


def _recoded(facts: MessageFacts, part: MimePart, new: bytes, cte: str) -> PartEdit:
    """The edit giving ``part`` the body ``new`` in the transfer encoding ``cte``, not
    its own: under a multipart, with its header section saying so (its whole slot);
    the message's own body alone, its header section left to the milter's header
    edits (``PartEdit.transfer_encoding``: see :func:`~.rewrite.rewrite_body`)."""
    nl = facts.newline
    body = _with_tail(facts.raw[part.body_start : part.body_end], _encode(new, cte, nl))
    if part.parent is None:
        return PartEdit(part.body_start, part.body_end, body, part, False,
                        transfer_encoding=cte)
    section = with_transfer_encoding(facts.raw[part.header_start : part.body_start], cte, nl)
    return PartEdit(part.header_start, part.body_end, section + body, part, True)


def with_transfer_encoding(section: bytes, cte: str, newline: bytes) -> bytes:
    """A header section (its blank line included) with its Content-Transfer-Encoding
    fields, if any, replaced by one saying ``cte``, last: where the milter's header
    edits put it in the message's own."""
    if not section.endswith(newline * 2) or section.count(b"\r") != section.count(b"\r\n"):
        # No blank line (the body began at a line that was no field), or a line ended
        # by a lone CR, which readers read as a line end and the expression does not.
        raise RewriteError("a header section that could not be given a new transfer encoding")
    fields = _CTE_FIELD.sub(b"", section[: -len(newline)])
    return b"%sContent-Transfer-Encoding: %s%s%s" % (fields, cte.encode(), newline, newline)


def _tnef_notice(notice: bytes) -> bytes:
    # A file Outlook opens in Notepad: Windows line ends, and a byte order mark so
    # that an older Notepad, which would take the bytes for the ANSI code page,
    # shows a file name outside ASCII as written.
    return b"\xef\xbb\xbf" + notice.replace(b"\n", b"\r\n")


def tnef_edit(
    facts: MessageFacts, carrier: MimePart, members: list[tuple[MimePart, str]]
) -> tuple[PartEdit, list[Change]]:
    """Replace ``members`` (files its TNEF lists) by notices in the body of ``carrier``."""
    original = facts.raw[carrier.body_start : carrier.body_end]
    stream = transfer.decode(original, carrier.transfer_encoding)
    notices: dict[int, bytes] = {}
    changes: list[Change] = []
    try:
        found = tnefrewrite.attachments(stream)
        for part, reason in members:
            number = tnefparts.number(facts.parts, part)
            if number >= len(found) or len(found[number].data) != part.decoded_size:
                raise RewriteError("a TNEF file is not where it was listed")
            notice, change = _stripped(part, bytes(found[number].data), reason)
            notices[number] = _tnef_notice(notice)
            changes.append(change)
        new = tnefrewrite.replace_attachments(stream, notices)
    except tnefrewrite.UnsafeTnef as exc:
        raise RewriteError(str(exc)) from exc
    body = _reencoded(original, new, carrier.transfer_encoding, facts.newline)
    if transfer.decode(body, carrier.transfer_encoding) != new:  # 7bit, say, or binary QP
        raise RewriteError("a TNEF stream would not survive its transfer encoding")
    stripped = tuple(part for part, _ in members)
    return PartEdit(carrier.body_start, carrier.body_end, body, carrier, False, stripped), changes
