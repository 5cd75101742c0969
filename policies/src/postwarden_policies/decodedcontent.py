"""The parts listed inside content a part carries encoded (``MimePart.in_decoded``: S/MIME
signed data, an encoded message/global), found again in that content, for a rewrite
to judge what it would change.

The parser lists them with their carrier's offsets (:mod:`postwarden_policies.mimetree`):
their bytes are in the carrier's encoded body, not in the message. Here each
carrier's content is decoded again and parsed as a message of its own, once, with
what it carries encoded in turn left unread: a part in there is found through its
own carrier, so nested carriers cost each level's content once, not once per level
above it.
"""

from __future__ import annotations

from postwarden_policies.facts import MessageFacts, MimePart
from postwarden_policies.mimeparse import parse_message
from postwarden_policies.mimetree import decoded_content, decoded_kind
from postwarden_policies.partedits import RewriteError

__all__ = ["DecodedContents"]


def _carrier(parts: tuple[MimePart, ...], part: MimePart) -> tuple[MimePart, MimePart]:
    """The entity inside decoded content that ``part`` is or is in, and the part carrying
    it: below a leaf, only that entity is a MIME entity (files uuencoded or in a
    TNEF are ``uuencoded``)."""
    root = part
    while root.parent is not None:
        carrier = parts[root.parent]
        if not root.uuencoded and decoded_kind(
                carrier.content_type, carrier.transfer_encoding, carrier.detected_type):
            return root, carrier
        root = carrier
    raise RewriteError("a part inside decoded content has no carrier")


class DecodedContents:
    """The content each carrier of one message holds, parsed when first asked for."""

    def __init__(self, facts: MessageFacts) -> None:
        self.facts = facts
        self._parsed: dict[int, tuple[MessageFacts, dict[str, MimePart]]] = {}

    def locate(self, part: MimePart) -> tuple[MessageFacts, MimePart]:
        """``part`` (``in_decoded``) as a part of the content that holds it: that
        content parsed as a message, and the part in it."""
        root, carrier = _carrier(self.facts.parts, part)
        holder, body = self.locate(carrier) if carrier.in_decoded else (self.facts, carrier)
        inner, by_path = self._content(carrier.index, holder, body)
        found = by_path.get(part.path[len(root.path) + 1 :])
        if found is None:
            raise RewriteError("a part inside decoded content was not found again")
        return inner, found

    def _content(
        self, key: int, holder: MessageFacts, carrier: MimePart
    ) -> tuple[MessageFacts, dict[str, MimePart]]:
        """The content ``carrier`` (a part of ``holder``) carries, parsed (cached by ``key``)."""
        if key not in self._parsed:
            kind = decoded_kind(carrier.content_type, carrier.transfer_encoding,
                                carrier.detected_type)
            body = holder.raw[carrier.body_start : carrier.body_end]
            found = None if kind is None else decoded_content(kind, body, carrier.transfer_encoding)
            if found is None:
                raise RewriteError("decoded content was not found again")
            inner = parse_message(found[0], holder.envelope, read_decoded=False)
            self._parsed[key] = inner, {p.path: p for p in inner.parts}
        return self._parsed[key]
