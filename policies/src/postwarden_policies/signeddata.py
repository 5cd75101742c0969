"""The parts listed inside S/MIME signed data (``MimePart.in_signed_data``), found
again in the content that holds them, for a rewrite to judge what it would change.

The parser lists them with their carrier's offsets (:mod:`postwarden_policies.mimetree`):
their bytes are in the carrier's DER, not in the message. Here each carrier's
content is read again and parsed as a message of its own, once, with the signed
data inside it left unread: a part in there is found through its own carrier in
turn, so nested signed data costs each level's content once, not once per level
above it.
"""

from __future__ import annotations

from postwarden_policies import cms, transfer
from postwarden_policies.facts import MessageFacts, MimePart
from postwarden_policies.mimeparse import parse_message
from postwarden_policies.mimetree import OPAQUE_TYPES
from postwarden_policies.partedits import RewriteError

__all__ = ["SignedContents"]


def _carrier(parts: tuple[MimePart, ...], part: MimePart) -> tuple[MimePart, MimePart]:
    """The entity inside signed data that ``part`` is or is in, and the part carrying
    it: below a leaf, only that entity is a MIME entity (files uuencoded or in a
    TNEF are ``uuencoded``)."""
    root = part
    while root.parent is not None:
        carrier = parts[root.parent]
        if not root.uuencoded and carrier.content_type in OPAQUE_TYPES:
            return root, carrier
        root = carrier
    raise RewriteError("a part inside signed data has no carrier")


class SignedContents:
    """The content of each signed-data part of one message, parsed when first asked for."""

    def __init__(self, facts: MessageFacts) -> None:
        self.facts = facts
        self._parsed: dict[int, tuple[MessageFacts, dict[str, MimePart]]] = {}

    def locate(self, part: MimePart) -> tuple[MessageFacts, MimePart]:
        """``part`` (``in_signed_data``) as a part of the content that holds it: that
        content parsed as a message, and the part in it."""
        root, carrier = _carrier(self.facts.parts, part)
        holder, body = self.locate(carrier) if carrier.in_signed_data else (self.facts, carrier)
        inner, by_path = self._content(carrier.index, holder, body)
        found = by_path.get(part.path[len(root.path) + 1 :])
        if found is None:
            raise RewriteError("a part inside signed data was not found again")
        return inner, found

    def _content(
        self, key: int, holder: MessageFacts, carrier: MimePart
    ) -> tuple[MessageFacts, dict[str, MimePart]]:
        """The content ``carrier`` (a part of ``holder``) carries, parsed (cached by ``key``)."""
        if key not in self._parsed:
            body = holder.raw[carrier.body_start : carrier.body_end]
            found = cms.signed_content(transfer.decode(body, carrier.transfer_encoding))
            if found is None:
                raise RewriteError("signed data was not found again")
            inner = parse_message(found.content, holder.envelope, unwrap_signed=False)
            self._parsed[key] = inner, {p.path: p for p in inner.parts}
        return self._parsed[key]
