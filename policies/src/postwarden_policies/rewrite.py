"""Minimal body rewriting: strip attachments, sanitize HTML, touch nothing else.

The new message is spliced from the original bytes: every part the plan does
not touch is copied byte for byte (same boundaries, same headers). A stripped
attachment's slot (its headers and body) gets a short text/plain notice
naming the file, its decoded size and SHA-256. A sanitized HTML part
(``MimePart.is_html``: text/html, or an inline octet-stream named as HTML)
keeps its headers; its body is re-encoded in its own transfer encoding and
charset (characters the charset lacks become HTML character references, so
the charset parameter never changes). Line ends follow the original's, set in
the text before it is encoded; the new bytes must decode, by the part's label,
to that text, or :class:`RewriteError` is raised (a 7bit part labelled UTF-16,
say, whose HTML would have to go out as ASCII). The top-level header section is
never changed: a top-level attachment keeps its headers and gets the notice as body.

Parts under a well-formed multipart/signed, multipart/encrypted or S/MIME are
kept intact when ``plan.skip_signed`` (the default): changing them would break
the signature (``MimePart.in_signed``). One that would need a change (an
attachment to strip, HTML the sanitizer would clean) raises
:class:`RewriteError` instead, and the engine holds the message.
A part inside a stripped part goes with it. A file uuencoded in a text part
(``MimePart.uuencoded``) cannot be stripped or sanitized apart from that
text: a plan that would change one raises :class:`RewriteError`. A file inside
a TNEF ``winmail.dat`` is stripped from the stream instead
(:mod:`postwarden_policies.tnefrewrite`: a text file naming it takes its
place), the part's body re-encoded as sanitized HTML is, and the re-read TNEF
must list its other files as before; one inside an attached Outlook message,
or in a TNEF not read to its end (``unreadable_tnef``), raises, and so does an
HTML file in a TNEF a plan sanitizes HTML in (unless stripped): its bytes are in
the stream, no entity to clean alone. An HTML part stays untouched only when the
sanitizer gives it back as it is (what it counted as removed never decides: see
:mod:`postwarden_policies.sanitize`).

No line of a rewritten part starts with "--", so none reads as a boundary
delimiter (RFC 2046 forbids even its prefix): in sanitized HTML such a dash is
written ``&#45;``, and a quoted-printable line starting with "-" (a line break
falls where the sender's text puts it) starts with ``=2D``.

Every result is re-parsed and checked: the intended parts changed, every other
part is byte-identical, no new parser flags. A failed check raises
:class:`RewriteError` (the engine catches it and falls back safely).

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
from postwarden_policies.charsets import decode_bytes, read_as_readers
from postwarden_policies.facts import MessageFacts, MimePart
from postwarden_policies.html_allowlist import HtmlOptions
from postwarden_policies.htmllines import within_line_limit
from postwarden_policies.mimeparse import parse_message
from postwarden_policies.sanitize import removed_whole, sanitize_html
from postwarden_policies.verdicts import AttachmentStripped, Change, HtmlSanitized

__all__ = ["HtmlOptions", "RewriteError", "RewritePlan", "RewriteResult", "rewrite_body"]

# Flags a faithful rewrite may add: the parser's limits, re-applied, and an HTML
# body that was nothing but what the sanitizer removes (a lone <script>).
_EXPECTED_FLAGS = frozenset({"too_many_parts", "too_deep", "empty_body"})
# Two dashes at the start of a line (after LF, or a CR, which parsers take for a
# line end too): how every boundary delimiter begins.
_LINE_DASHES = re.compile(r"(?<![^\r\n])--")
_QP_LINE = 76


@dataclass(frozen=True, slots=True)
class RewritePlan:
    strip: tuple[tuple[int, str], ...]  # (MimePart.index, reason)
    sanitize_html: HtmlOptions | None
    skip_signed: bool = True


@dataclass(frozen=True, slots=True)
class RewriteResult:
    body: bytes | None  # new body after the header section; None = unchanged
    changes: tuple[Change, ...]


class RewriteError(Exception):
    """The rewritten message did not re-parse as intended; nothing may be applied."""


@dataclass(frozen=True, slots=True)
class _Edit:
    start: int
    end: int
    data: bytes
    part: MimePart
    whole_slot: bool  # headers and body replaced (a stripped attachment)
    members: tuple[MimePart, ...] = ()  # files of its TNEF replaced by notices


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
            if len(line) <= _QP_LINE:
                break
            cut = _QP_LINE - 1  # room for the soft break's "="
            while b"=" in line[cut - 2 : cut]:  # never inside an "=XX" escape
                cut -= 1
            lines.append(line[:cut] + b"=")
            line = line[cut:]
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


def _as_labelled(notice: bytes, part: MimePart) -> bytes:
    """The notice for a top-level part, whose header section stays: escaped in HTML; in
    a text part's labelled charset (the file name's letters as "?" where that lacks them,
    or Python does not know it); RewriteError where no reader would read it so (a
    utf-16 label on a 7bit body, say)."""
    text = notice.decode()
    if part.content_type == "text/html":  # a file name is no markup
        text = html.escape(text, quote=False)
    if not part.content_type.startswith("text/") or not part.charset:
        return text.encode()
    cte = part.transfer_encoding
    for shown, codec in ((text, part.charset),
                         (text.encode("ascii", "replace").decode(), "ascii")):
        try:
            encoded = shown.encode(codec)
        except (LookupError, ValueError):  # unknown to Python, or lacking the letters
            continue
        if cte in ("7bit", "8bit", "binary") and b"\0" in encoded:
            continue  # as it is, a NUL byte ends no reader's text well
        if cte == "7bit" and not encoded.isascii():
            continue
        if decode_bytes(encoded, part.charset, set()) == shown:
            return encoded
    raise RewriteError("the notice would not read as its part's charset says")


def _strip_edit(facts: MessageFacts, part: MimePart, reason: str) -> tuple[_Edit, Change]:
    notice, change = _stripped(part, _decoded(facts, part), reason)
    nl = facts.newline
    original = facts.raw[part.body_start : part.body_end]
    if part.parent is None:  # the top-level header section stays as it is
        notice = _as_labelled(notice, part)
        body = _with_tail(original, _encode(notice, part.transfer_encoding, nl))
        return _Edit(part.body_start, part.body_end, body, part, False), change
    slot = nl.join(
        (
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Transfer-Encoding: quoted-printable",
            b"Content-Disposition: inline",
            b"",
            _encode(notice, "quoted-printable", nl).rstrip(b"\r\n"),
        )
    )
    return _Edit(part.header_start, part.body_end, _with_tail(original, slot), part, True), change


def _reencoded(original: bytes, new: bytes, cte: str, newline: bytes) -> bytes:
    """``new`` in the transfer encoding and style (base64 line length, final line
    breaks) of the body ``original``."""
    width = transfer.base64_line_length(original)
    return _with_tail(original, _encode(new, cte, newline, width))


def _with_references(text: str, charset: str) -> str:
    """``text`` with each character ``charset`` lacks as an HTML character reference,
    so the part keeps its charset parameter."""
    lacking: dict[int, str] = {}
    for char in set(text):
        try:
            char.encode(charset)
        except UnicodeEncodeError:
            lacking[ord(char)] = f"&#{ord(char)};"
    return text.translate(lacking)


def _sanitize_edit(
    facts: MessageFacts, part: MimePart, options: HtmlOptions
) -> tuple[_Edit, Change] | None:
    original = facts.raw[part.body_start : part.body_end]
    data = _decoded(facts, part)
    unknown: set[str] = set()
    readable = read_as_readers(part.charset, data)
    if readable:
        html = decode_bytes(data, part.charset or "utf-8", unknown)
        clean, removed = sanitize_html(html, options)
        if clean == html:  # within the allowlist as it is
            return None
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
    charset = part.charset if readable and not unknown and part.charset else "us-ascii"
    cte = part.transfer_encoding
    text = _with_references(clean, charset)
    if cte not in ("8bit", "binary", "base64", "quoted-printable") \
            and not text.encode(charset).isascii():
        charset, text = "us-ascii", _with_references(clean, "us-ascii")  # stays 7-bit clean
    if cte in ("7bit", "8bit"):  # lines travel as they are: within SMTP's limit
        text = within_line_limit(text, charset, "\r\n" if "\r\n" in text else "\n")
    new = text.encode(charset)
    # The reader decodes the bytes by the part's label (unchanged): they must read
    # as the text we cleaned. ASCII under a label such as utf-16 does not, and the
    # label is in a header section we keep, so such a part is held.
    if readable and decode_bytes(new, part.charset or "utf-8", set()) != text:
        raise RewriteError("a sanitized part would not read as it was cleaned")
    if new == data:  # nh3 changed nothing but line ends
        return None
    body = _reencoded(original, new, cte, facts.newline)
    change = HtmlSanitized(
        part=part.path, removed=removed, bytes_before=len(data), bytes_after=len(new)
    )
    return _Edit(part.body_start, part.body_end, body, part, False), change


def _tnef_notice(notice: bytes) -> bytes:
    # A file Outlook opens in Notepad: Windows line ends, and a byte order mark so
    # that an older Notepad, which would take the bytes for the ANSI code page,
    # shows a file name outside ASCII as written.
    return b"\xef\xbb\xbf" + notice.replace(b"\n", b"\r\n")


def _tnef_edit(
    facts: MessageFacts, carrier: MimePart, members: list[tuple[MimePart, str]]
) -> tuple[_Edit, list[Change]]:
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
    return _Edit(carrier.body_start, carrier.body_end, body, carrier, False, stripped), changes


def _below_any(facts: MessageFacts, part: MimePart, indexes: set[int]) -> bool:
    """Whether ``part`` is listed below one of the parts at ``indexes``."""
    parent = part.parent
    while parent is not None and parent not in indexes:
        parent = facts.parts[parent].parent
    return parent is not None


def _inside(part: MimePart, edits: list[_Edit]) -> bool:
    return any(e.start <= part.header_start and part.body_end <= e.end for e in edits)


def _check_changeable(part: MimePart, plan: RewritePlan) -> None:
    """Raise :class:`RewriteError` for a part that cannot be changed on its own, so
    the engine holds the message instead of delivering what policy wanted changed.

    A uuencoded file is no MIME entity that could be replaced apart from its text.
    A part under a signature is kept intact when ``plan.skip_signed``: anyone can
    wrap hostile HTML or a file in a well-formed signature, so a signed part that
    would need a change is held, and only one that needs none goes out untouched.
    """
    if part.uuencoded:
        raise RewriteError("a uuencoded file cannot be changed apart from its text")
    if plan.skip_signed and part.in_signed:
        raise RewriteError("a signed part would have to change")


def _check_tnef_strippable(facts: MessageFacts, carrier: MimePart, plan: RewritePlan) -> None:
    """Raise :class:`RewriteError` unless a file listed below ``carrier`` (its
    TNEF) can be stripped: one inside an attached Outlook message would mean
    rewriting a stream inside a stream, and a stream not read to its end may hide
    what a rewrite would break."""
    if carrier.uuencoded:
        raise RewriteError("a file inside an attached message cannot be stripped on its own")
    if "unreadable_tnef" in facts.flags:
        raise RewriteError("an unreadable TNEF stream cannot be rewritten")
    _check_changeable(carrier, plan)


def _plan_edits(facts: MessageFacts, plan: RewritePlan) -> tuple[list[_Edit], list[Change]]:
    edits: list[_Edit] = []
    changes: list[Change] = []
    wanted = sorted(
        ((facts.parts[i], reason) for i, reason in plan.strip if 0 <= i < len(facts.parts)),
        key=lambda item: (item[0].header_start, -item[0].body_end),
    )
    in_tnef: dict[int, list[tuple[MimePart, str]]] = {}  # by the carrier's index
    tnef_files: set[int] = set()
    for part, reason in wanted:
        # Gone with a stripped part, or with a stripped file of a TNEF (an attached
        # message), which shares its carrier's bytes and so is inside no edit.
        if _inside(part, edits) or _below_any(facts, part, tnef_files):
            continue
        carrier = tnefparts.carrier(facts.parts, part)
        if carrier is not None:  # stripped with the others its carrier lists, below
            _check_tnef_strippable(facts, carrier, plan)
            in_tnef.setdefault(carrier.index, []).append((part, reason))
            tnef_files.add(part.index)
            continue
        _check_changeable(part, plan)
        edit, change = _strip_edit(facts, part, reason)
        edits.append(edit)
        changes.append(change)
    for index, members in in_tnef.items():
        edit, stripped = _tnef_edit(facts, facts.parts[index], members)
        edits.append(edit)
        changes += stripped
    if plan.sanitize_html is not None:
        for part in facts.parts:
            if not part.is_html or _inside(part, edits) or part.index in tnef_files:
                continue
            if tnefparts.carrier(facts.parts, part) is not None:
                # Its bytes are inside the stream: no entity to clean alone, and passed
                # on as it is, its script would reach whoever opens it.
                raise RewriteError("an HTML file inside a TNEF cannot be sanitized")
            done = _sanitize_edit(facts, part, plan.sanitize_html)
            if done is not None:
                _check_changeable(part, plan)
                edits.append(done[0])
                changes.append(done[1])
    return edits, changes


def _below(parts: tuple[MimePart, ...], top: MimePart) -> tuple[MimePart, ...]:
    """The parts listed below ``top``: they follow it, deeper, in depth-first order."""
    end = top.index + 1
    while end < len(parts) and parts[end].depth > top.depth:
        end += 1
    return parts[top.index + 1 : end]


def _tnef_files(
    parts: tuple[MimePart, ...], carrier: MimePart, stripped: tuple[str, ...]
) -> list[tuple[object, ...]]:
    """The files ``carrier``'s TNEF lists, as compared before and after a rewrite: a
    stripped one by its path alone (its notice is checked with the stream), nothing
    below it."""
    under = tuple(f"{path}." for path in stripped)
    return [
        (p.path,)
        if p.path in stripped
        else (p.path, p.filenames, p.content_type, p.decoded_size, p.detected_type)
        for p in _below(parts, carrier)
        if not p.path.startswith(under)
    ]


def _verify(facts: MessageFacts, raw: bytes, edits: list[_Edit]) -> None:
    # A message cut short by the parser's limits is re-read with the same cut.
    limit = len(facts.parts) if "too_many_parts" in facts.flags else 1000
    depth = max((p.depth for p in facts.parts), default=0) if "too_deep" in facts.flags else 100
    new = parse_message(raw, facts.envelope, max_parts=limit, max_depth=depth)
    if (new.flags - facts.flags) - _EXPECTED_FLAGS:
        raise RewriteError("rewrite introduced parser flags")
    by_path = {p.path: p for p in new.parts}
    edited = {e.part.path: e for e in edits}
    ancestors: set[int] = set()
    for done in edits:
        parent = done.part.parent
        while parent is not None and parent not in ancestors:
            ancestors.add(parent)
            parent = facts.parts[parent].parent
    for part in facts.parts:
        edit = edited.get(part.path)
        fresh = by_path.get(part.path)
        if edit is not None:
            if fresh is None:
                raise RewriteError("an edited part vanished")
            start = fresh.header_start if edit.whole_slot else fresh.body_start
            if raw[start : fresh.body_end] != edit.data:
                raise RewriteError("an edited part did not come out as written")
        elif part.index not in ancestors and not _inside(part, edits):
            if (
                fresh is None
                or raw[fresh.header_start : fresh.body_end]
                != (facts.raw[part.header_start : part.body_end])
            ):
                raise RewriteError("an untouched part changed")
    for done in edits:
        stripped = tuple(member.path for member in done.members)
        if stripped and _tnef_files(facts.parts, done.part, stripped) != _tnef_files(
            new.parts, by_path[done.part.path], stripped
        ):
            raise RewriteError("a TNEF file was not listed as before")


def rewrite_body(facts: MessageFacts, plan: RewritePlan) -> RewriteResult:
    """Apply ``plan`` to the message; ``body`` is None when nothing changed."""
    edits, changes = _plan_edits(facts, plan)
    if not edits:
        return RewriteResult(body=None, changes=())
    pieces: list[bytes] = []
    pos = 0
    for edit in sorted(edits, key=lambda e: e.start):
        pieces += (facts.raw[pos : edit.start], edit.data)
        pos = edit.end
    pieces.append(facts.raw[pos:])
    raw = b"".join(pieces)
    _verify(facts, raw, edits)
    return RewriteResult(body=raw[facts.body_offset :], changes=tuple(changes))
