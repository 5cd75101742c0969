"""A byte-level MIME parser: raw message bytes to :class:`MessageFacts`.

:func:`parse_message` is the whole of it to callers; it never raises. The work is
done by :mod:`postwarden_policies.mimetree` (the entity tree: headers,
boundaries, nested messages, the entity inside S/MIME signed data or an encoded
message/global, sizes and detected types),
:mod:`postwarden_policies.textparts` (the text body rules read, and files
uuencoded in it), :mod:`postwarden_policies.tnefparts` (the attachments inside a
TNEF ``winmail.dat``) and :mod:`postwarden_policies.entityheaders` (how readers
read an entity's headers). What it finds wrong is reported as the flags of
:mod:`postwarden_policies.mimeflags`; files inside a part (uuencoded in text,
inside a TNEF) are listed below it as :mod:`postwarden_policies.partlist` says.
Being no MIME entities, they cannot be stripped or sanitized on their own: a
rewrite that would change one fails (see :mod:`postwarden_policies.rewrite`)
and the engine quarantines the message.
"""

from __future__ import annotations

import logging

from postwarden_policies import bodytext, entityheaders, uuencode
from postwarden_policies.facts import Envelope, Header, MessageFacts
from postwarden_policies.mimeflags import MALFORMED, NO_BODY
from postwarden_policies.mimetree import Parser

__all__ = ["parse_message"]

log = logging.getLogger(__name__)
# Headers RFC 5322 allows once that rules read (from, from_domain, subject).
_READ_ONCE = ("from", "subject")


def _newline(raw: bytes) -> bytes:
    """The message's own line ending, judged by its first line; CRLF by default."""
    at = raw.find(b"\n")
    return b"\n" if at == 0 or (at > 0 and raw[at - 1] != 0x0D) else b"\r\n"


def parse_message(
    raw: bytes, envelope: Envelope, *, max_parts: int = 1000, max_depth: int = 100,
    header_only: bool = False, read_decoded: bool = True, binhex: uuencode.Budget | None = None,
) -> MessageFacts:
    """Facts about ``raw`` (CRLF or LF line ends). Never raises; flags as in
    :mod:`postwarden_policies.mimeflags`.

    ``header_only``: ``raw`` is the header of a message that ended before its body
    came (a refused or aborted transaction): the flags say nothing of the body.
    ``read_decoded=False`` leaves what parts carry encoded (S/MIME signed data, an
    encoded message/global) unread (see :mod:`postwarden_policies.decodedcontent`,
    which reads it one level at a time). ``binhex``: what its BinHex reads may still
    cost, shared with those of the message ``raw`` is part of (the send API's request);
    a budget of its own by default.
    """
    parser = Parser(raw, max_parts, max_depth, read_decoded,
                    uuencode.Budget() if binhex is None else binhex)
    headers: tuple[Header, ...] = ()
    body_offset = 0
    from_address = None
    try:
        headers, body_offset = parser.run()
        from_address = entityheaders.from_address(headers, parser.flags)
    except Exception:  # the parser must never take the milter down with it
        log.exception("MIME parser failed; facts are incomplete")
        parser.flags.add("parser_error")
    flags = parser.flags
    if body_offset >= len(raw):
        flags.add("empty_body")
    for name in _READ_ONCE:
        entityheaders.header_copies(headers, name, flags, "duplicate_header")
    if header_only:
        flags -= NO_BODY
    if flags & MALFORMED:
        flags.add("malformed")
    return MessageFacts(
        envelope=envelope,
        raw=raw,
        body_offset=body_offset,
        headers=headers,
        parts=tuple(parser.parts),
        from_address=from_address,
        subject=entityheaders.first_value(headers, "subject"),
        message_id=(entityheaders.first_value(headers, "message-id") or "").strip() or None,
        size=len(raw),
        flags=frozenset(flags),
        newline=_newline(raw),
        text="\n".join(parser.text.texts),
        renderings=bodytext.Renderings(parser.text.renderable),
    )
