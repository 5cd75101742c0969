"""Minimal body rewriting: strip attachments, sanitize HTML, touch nothing else.

The new message is spliced from the original bytes: every part the plan does
not touch is copied byte for byte (same boundaries, same headers), and each part
it changes is replaced by its edit (:mod:`postwarden_policies.partedits`: the
notice of a stripped attachment, the sanitized body of an HTML part).

Parts under a well-formed multipart/signed, multipart/encrypted or S/MIME are
kept intact when ``plan.skip_signed`` (the default): changing them would break
the signature (``MimePart.in_signed``). One that would need a change (an
attachment to strip, HTML the sanitizer would clean) raises
:class:`RewriteError` instead, and the engine holds the message; but HTML it would
clean only of harmless markup (Outlook's: :mod:`postwarden_policies.signedhtml`)
goes out as it came, reported as :class:`~.verdicts.SignedHtmlKept`. A part
inside content another part carries encoded (``MimePart.in_decoded``: the DER of
an opaque ``application/pkcs7-mime`` message, the base64 or quoted-printable of a
message/global or message/rfc822) is never changed on its own, whatever
``plan.skip_signed`` says: one to strip raises. So does HTML the sanitizer would
clean in signed data (judged on its bytes, found again by
:mod:`postwarden_policies.decodedcontent`). An encoded message holding HTML is
rewritten whole instead: decoded, its HTML sanitized as this module sanitizes a
message's (an encoded message inside it in turn, signed data inside it judged as
here), checked as any rewrite, and encoded again as it came, so its reader (which
decodes it) finds the clean HTML where the hostile one was. Each level is parsed
once, the encoded messages in it left unread and found in the whole message's facts.
A part inside a stripped part goes with it. A file uuencoded in a text part
(``MimePart.uuencoded``) cannot be stripped or sanitized apart from that
text: a plan that would change one raises :class:`RewriteError`. A file inside
a TNEF ``winmail.dat`` is stripped from the stream instead
(:mod:`postwarden_policies.tnefrewrite`: a text file naming it takes its
place), the part's body re-encoded as sanitized HTML is, and the re-read TNEF
must list its other files as before; one inside an attached Outlook message,
or in a TNEF not read to its end (``unreadable_tnef``), raises, and so does an
HTML file in a TNEF a plan sanitizes HTML in (unless stripped): its bytes are in
the stream, no entity to clean alone. The HTML parts of a message share the
sanitizer's budget for one message (:data:`~postwarden_policies.sanitize.MESSAGE_BUDGET`):
a part that would take them past it gets the ``too_complex`` notice.

Every result is re-parsed and checked: the intended parts changed, every other
part is byte-identical, no new parser flags. A failed check raises
:class:`RewriteError` (the engine catches it and falls back safely; the edits of
:mod:`postwarden_policies.partedits`, where it is defined, raise it too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from postwarden_policies import tnefparts
from postwarden_policies.decodedcontent import DecodedContents
from postwarden_policies.facts import DecodedKind, MessageFacts, MimePart
from postwarden_policies.html_allowlist import HtmlOptions
from postwarden_policies.mimeparse import parse_message
from postwarden_policies.mimetree import decoded_content, decoded_kind
from postwarden_policies.partedits import (
    PartEdit,
    RewriteError,
    carrier_edit,
    kept_signed,
    sanitize_edit,
    strip_edit,
    tnef_edit,
    with_transfer_encoding,
)
from postwarden_policies.sanitize import message_budget
from postwarden_policies.verdicts import AddHeader, Change, Edit, RemoveHeader

__all__ = ["HtmlOptions", "RewriteError", "RewritePlan", "RewriteResult", "rewrite_body"]

# Flags a faithful rewrite may add: the parser's limits, re-applied, and an HTML
# body that was nothing but what the sanitizer removes (a lone <script>).
_EXPECTED_FLAGS = frozenset({"too_many_parts", "too_deep", "empty_body"})
# What a part in decoded content (MimePart.in_decoded) is inside, in the reasons given.
_WITHIN: dict[DecodedKind, str] = {
    "signed_data": "S/MIME signed data",
    "encoded_message": "an encoded message",
}


@dataclass(frozen=True, slots=True)
class RewritePlan:
    strip: tuple[tuple[int, str], ...]  # (MimePart.index, reason)
    sanitize_html: HtmlOptions | None
    skip_signed: bool = True


@dataclass(frozen=True, slots=True)
class RewriteResult:
    body: bytes | None  # new body after the header section; None = unchanged
    changes: tuple[Change, ...]
    headers: tuple[Edit, ...] = ()  # the header edits the new body needs


# The header section of a message that was one file (application/pdf, say) and is now
# its notice: the notice's type, and no disposition offering it as the file.
_RETYPED: tuple[Edit, ...] = (
    RemoveHeader("Content-Type"),
    RemoveHeader("Content-Disposition"),
    AddHeader("Content-Type", "text/plain; charset=utf-8"),
)


def _below_any(facts: MessageFacts, part: MimePart, indexes: set[int]) -> bool:
    """Whether ``part`` is listed below one of the parts at ``indexes``."""
    parent = part.parent
    while parent is not None and parent not in indexes:
        parent = facts.parts[parent].parent
    return parent is not None


def _inside(part: MimePart, edits: list[PartEdit]) -> bool:
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
        # Ordinary signed HTML mail lands here: the hold queue's reader needs the setting.
        raise RewriteError("a signed part would have to change (signed_mail: skip holds it; "
                           "sanitize would change it and break the signature)")


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


def _plan_edits(facts: MessageFacts, plan: RewritePlan, level: _Level,
                ) -> tuple[list[PartEdit], list[Change]]:
    edits: list[PartEdit] = []
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
        if part.in_decoded:
            raise RewriteError(f"a part inside {_WITHIN[part.in_decoded]} cannot be changed")
        carrier = tnefparts.carrier(facts.parts, part)
        if carrier is not None:  # stripped with the others its carrier lists, below
            _check_tnef_strippable(facts, carrier, plan)
            in_tnef.setdefault(carrier.index, []).append((part, reason))
            tnef_files.add(part.index)
            continue
        _check_changeable(part, plan)
        edit, change = strip_edit(facts, part, reason)
        edits.append(edit)
        changes.append(change)
    for index, members in in_tnef.items():
        edit, stripped = tnef_edit(facts, facts.parts[index], members)
        edits.append(edit)
        changes += stripped
    if plan.sanitize_html is not None:
        decoded = DecodedContents(facts)
        rewritten = _encoded_messages(facts, plan, edits, changes, level)
        for part in facts.parts:
            if part.is_html and part.index not in tnef_files:
                done = _html_edit(facts, part, plan, edits, decoded=decoded,
                                  rewritten=rewritten)
                if done is not None:
                    if done[0] is not None:
                        edits.append(done[0])
                    changes.append(done[1])
    return edits, changes


def _html_edit(facts: MessageFacts, part: MimePart, plan: RewritePlan, edits: list[PartEdit],
               *, decoded: DecodedContents, rewritten: set[int],
               ) -> tuple[PartEdit | None, Change] | None:
    """The edit sanitizing the HTML ``part`` and its change, None where it needs none or is
    sanitized with the encoded message it is in (carried by a part at ``rewritten``); raises
    where it would need one it cannot have. A signed part that cannot change (opaque
    signed data; any, under ``plan.skip_signed``) but only harmlessly goes out as it came,
    reported (no edit). Signed data in such a message, which its rewrite leaves as it is,
    is judged here (its parts lie inside that rewrite's edit)."""
    options = plan.sanitize_html
    assert options is not None  # noqa: S101 - asked only of a plan that sanitizes
    if part.in_decoded and _top_carrier(facts, part) in rewritten:
        if _in_encoded_messages(facts, part):
            return None
    elif _inside(part, edits):
        return None  # gone with a stripped part
    if tnefparts.carrier(facts.parts, part) is not None:
        # Its bytes are inside the stream: no entity to clean alone, and passed
        # on as it is, its script would reach whoever opens it.
        raise RewriteError("an HTML file inside a TNEF cannot be sanitized")
    if part.in_decoded:
        located = decoded.locate(part)
        if (done := sanitize_edit(*located, options)) is None:
            return None
        kept = part.in_decoded == "signed_data" and kept_signed(*located, options, done[1])
        if not kept:
            raise RewriteError(f"HTML inside {_WITHIN[part.in_decoded]} would have to change")
        return None, replace(kept, part=part.path)
    if (done := sanitize_edit(facts, part, options)) is None:
        return None
    if plan.skip_signed and part.in_signed and not part.uuencoded and (
            kept := kept_signed(facts, part, options, done[1])):
        return None, kept
    _check_changeable(part, plan)
    return done


def _top_carrier(facts: MessageFacts, part: MimePart) -> int | None:
    """The index of the part in the message that carries ``part`` (``in_decoded``) encoded."""
    parent = part.parent
    while parent is not None and facts.parts[parent].in_decoded:
        parent = facts.parts[parent].parent
    return parent


def _in_encoded_messages(facts: MessageFacts, part: MimePart) -> bool:
    """Whether ``part`` (``in_decoded``) is in encoded messages alone, not in signed data."""
    while part.in_decoded == "encoded_message" and part.parent is not None:
        part = facts.parts[part.parent]
    return part.in_decoded is None


@dataclass(frozen=True, slots=True)
class _Level:
    """Where the facts a rewrite plans lie in the whole message: an encoded message in it
    is parsed once, its own encoded messages left unread (else each level parsed all
    those below it, once for each level above: 30 levels of 1 MB took 4 s), and they are
    found in the whole message's facts, which list every level."""

    whole: MessageFacts
    by_path: dict[str, MimePart]
    path: str = ""  # of this level's message in the whole one ("": the whole one)

    def listed(self, part: MimePart) -> MimePart | None:
        """``part`` of this level as the whole message lists it."""
        return self.by_path.get(".".join(filter(None, (self.path, part.path))))


def _encoded_messages(facts: MessageFacts, plan: RewritePlan, edits: list[PartEdit],
                      changes: list[Change], level: _Level) -> set[int]:
    """Sanitize the HTML in each encoded message of the message (none inside another
    carrier: that one's rewrite carries it) that holds any, adding the edits and changes;
    the indexes of the parts that carry them."""
    carriers: set[int] = set()
    for carrier in facts.parts:
        kind = decoded_kind(carrier.content_type, carrier.transfer_encoding,
                            carrier.detected_type)
        listed = level.listed(carrier) if kind == "encoded_message" else None
        if listed is None or carrier.in_decoded or _inside(carrier, edits):
            continue
        below = _below(level.whole.parts, listed)
        root = next((p for p in below if p.parent == listed.index
                     and p.in_decoded == "encoded_message"), None)
        if root is None or not any(p.is_html for p in below):
            continue
        carriers.add(carrier.index)
        path = root.path.removeprefix(f"{level.path}.") if level.path else root.path
        done = _rewritten_message(facts, carrier, path, plan, replace(level, path=root.path))
        if done is not None:
            if done[0] is not None:
                edits.append(done[0])
            changes += done[1]
    return carriers


def _rewritten_message(facts: MessageFacts, carrier: MimePart, path: str, plan: RewritePlan,
                       level: _Level) -> tuple[PartEdit | None, list[Change]] | None:
    """The edit giving ``carrier`` the message it carries encoded (listed at ``path``, at
    ``level`` in the whole message) with its HTML sanitized (None: only signed parts kept
    as they came), and the changes, at their paths in ``facts``; None when nothing in it
    changes."""
    body = facts.raw[carrier.body_start : carrier.body_end]
    found = decoded_content("encoded_message", body, carrier.transfer_encoding)
    if found is None:
        raise RewriteError("an encoded message was not found again")
    inner = parse_message(found[0], facts.envelope, read_decoded=False)
    done = _rewritten(inner, RewritePlan((), plan.sanitize_html, plan.skip_signed), level)
    if done is None:
        return None
    head, new, inner_changes, _ = done  # its header edits are in ``head`` (no strip retypes)
    if new is not None:
        _check_changeable(carrier, plan)
    edit = None if new is None else carrier_edit(facts, carrier, head + new)
    return edit, [replace(change, part=f"{path}.{change.part}" if change.part else path)
                  for change in inner_changes]


def _below(parts: tuple[MimePart, ...], top: MimePart) -> tuple[MimePart, ...]:
    """The parts listed below ``top``: they follow it, deeper, in depth-first order."""
    end = top.index + 1
    while end < len(parts) and parts[end].depth > top.depth:
        end += 1
    return parts[top.index + 1 : end]


def _tnef_files(
    parts: tuple[MimePart, ...], carrier: MimePart, stripped: tuple[str, ...],
    renamed: Callable[[str], str] = str,
) -> list[tuple[object, ...]]:
    """The files ``carrier``'s TNEF lists, as compared before and after a rewrite: a
    stripped one by its path alone (its notice is checked with the stream), nothing
    below it; each by its path after the rewrite (``renamed``: see :func:`_renamer`)."""
    under = tuple(f"{path}." for path in stripped)
    paths = [(p, renamed(p.path)) for p in _below(parts, carrier)]
    return [
        (path,)
        if path in stripped
        else (path, p.filenames, p.content_type, p.decoded_size, p.detected_type)
        for p, path in paths
        if not path.startswith(under)
    ]


def _verify(facts: MessageFacts, raw: bytes, edits: list[PartEdit], whole: bool) -> None:
    # A message cut short by the parser's limits is re-read with the same cut, and one
    # decoded from the whole (not ``whole``) with its encoded contents left unread.
    limit = len(facts.parts) if "too_many_parts" in facts.flags else 1000
    depth = max((p.depth for p in facts.parts), default=0) if "too_deep" in facts.flags else 100
    new = parse_message(raw, facts.envelope, max_parts=limit, max_depth=depth,
                        read_decoded=whole)
    if (new.flags - facts.flags) - _EXPECTED_FLAGS:
        raise RewriteError("rewrite introduced parser flags")
    by_path = {p.path: p for p in new.parts}
    renamed = _renamer(facts, edits)
    edited = {e.part.path: e for e in edits}
    ancestors: set[int] = set()
    for done in edits:
        parent = done.part.parent
        while parent is not None and parent not in ancestors:
            ancestors.add(parent)
            parent = facts.parts[parent].parent
    for part in facts.parts:
        edit = edited.get(part.path)
        fresh = by_path.get(renamed(part.path))
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
        stripped = tuple(renamed(member.path) for member in done.members)
        if stripped and _tnef_files(facts.parts, done.part, stripped, renamed) != _tnef_files(
            new.parts, by_path[renamed(done.part.path)], stripped
        ):
            raise RewriteError("a TNEF file was not listed as before")


def _splices(facts: MessageFacts, edits: list[PartEdit]) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, bytes in place of raw[start:end)) for each edit; a moved one is two."""
    for edit in edits:
        if edit.moved_to is None:
            yield edit.start, edit.end, edit.data
        else:  # its delimiter line follows it to the front
            yield edit.start, edit.end, b""
            delimiter = facts.raw[edit.start : edit.part.header_start]
            yield edit.moved_to, edit.moved_to, edit.data + delimiter


def _renamer(facts: MessageFacts, edits: list[PartEdit]) -> Callable[[str], str]:
    """The path a part has after the rewrite: moved notices come first among their
    siblings, the others follow in their order."""
    moved = {e.part.index for e in edits if e.moved_to is not None}
    numbers: dict[str, str] = {}  # a part's path -> its new last number
    for parent in {facts.parts[i].parent for i in moved}:
        children = [p for p in facts.parts if p.parent == parent]
        order = [p for p in children if p.index in moved] + [
            p for p in children if p.index not in moved]
        numbers.update((p.path, str(n)) for n, p in enumerate(order, 1))

    def renamed(path: str) -> str:
        steps = path.split(".")
        return ".".join(numbers.get(".".join(steps[: n + 1]), step) for n, step in enumerate(steps))

    return renamed if numbers else str


def rewrite_body(facts: MessageFacts, plan: RewritePlan) -> RewriteResult:
    """Apply ``plan`` to the message; ``body`` is None when nothing changed."""
    with message_budget():  # its HTML parts share the sanitizer's time for a message
        done = _rewritten(facts, plan, _Level(facts, {p.path: p for p in facts.parts}))
    if done is None:
        return RewriteResult(body=None, changes=())
    _, body, changes, headers = done
    return RewriteResult(body=body, changes=changes, headers=headers)


def _rewritten(facts: MessageFacts, plan: RewritePlan, level: _Level,
               ) -> tuple[bytes, bytes | None, tuple[Change, ...], tuple[Edit, ...]] | None:
    """The message with ``plan`` applied, checked: its header section as the header
    edits leave it, its body (None: unchanged, signed parts kept as they came reported),
    the changes and those edits; None when nothing changed or was reported."""
    edits, changes = _plan_edits(facts, plan, level)
    if not edits:
        return (facts.raw[: facts.body_offset], None, tuple(changes), ()) if changes else None
    pieces: list[bytes] = []
    pos = 0
    for start, end, data in sorted(_splices(facts, edits), key=lambda s: (s[0], s[1])):
        pieces += (facts.raw[pos:start], data)
        pos = end
    pieces.append(facts.raw[pos:])
    head = facts.raw[: facts.body_offset]
    headers = _RETYPED if any(edit.retyped for edit in edits) else ()
    recoded = next((e.transfer_encoding for e in edits if e.transfer_encoding), None)
    if recoded is not None:  # checked below as the milter's header edits leave it
        head = with_transfer_encoding(head, recoded, facts.newline)
        headers += (RemoveHeader("Content-Transfer-Encoding"),
                    AddHeader("Content-Transfer-Encoding", recoded))
    raw = head + b"".join(pieces)[facts.body_offset :]
    _verify(facts, raw, edits, whole=facts is level.whole)
    return head, raw[len(head) :], tuple(changes), headers
