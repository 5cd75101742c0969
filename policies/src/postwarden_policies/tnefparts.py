"""The attachments inside a TNEF part (Outlook's ``winmail.dat``), listed below it.

A part is read as TNEF when it declares itself so (``application/ms-tnef``,
``application/vnd.ms-tnef``, a file named ``winmail.dat`` or ``win.dat``) or
its content starts with the TNEF signature, whatever it declares: Outlook goes
by the type, other readers by the name or the content. Its attachments are
listed below it (:mod:`postwarden_policies.partlist`), paths "P.1", "P.2",
...: every name the stream gives each one (:mod:`postwarden_policies.tnef`),
the type from its MIME tag (application/octet-stream without one), the size
and the detected type of its bytes. An attached Outlook message is listed with
its own attachments below it, within the depth limit. A part declared TNEF
that is not (no signature, a stream cut short or out of place, more than
``TNEF_SCAN`` encoded bytes) is flagged ``unreadable_tnef``: what was read is
listed, the rest may hide anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from postwarden_policies import magic, tnef, transfer
from postwarden_policies.entityheaders import media_type
from postwarden_policies.facts import MimePart
from postwarden_policies.partlist import EmbeddedFile, PartList

TNEF_SCAN = 32 * 1024 * 1024  # encoded bytes of a TNEF part decoded to be read
_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
_NAMES = frozenset({"winmail.dat", "win.dat"})
_DETECTED = "application/vnd.ms-tnef"
ENCODING = "x-tnef"  # the transfer encoding a listed attachment carries


def declared(content_type: str, names: Iterable[str]) -> bool:
    """Whether a part so typed and named says it is TNEF: Outlook goes by the type,
    other readers by the name."""
    return content_type in _TYPES or any(n.lower() in _NAMES for n in names)


def carrier(parts: Sequence[MimePart], member: MimePart) -> MimePart | None:
    """The part whose TNEF stream lists ``member`` (an attached message, if it is in
    one), or None when no TNEF lists it (a MIME part may call its own transfer encoding
    x-tnef: only a listed file is carried)."""
    if not member.uuencoded or member.transfer_encoding != ENCODING or member.parent is None:
        return None
    return parts[member.parent]


def number(parts: Sequence[MimePart], member: MimePart) -> int:
    """Which attachment of its stream ``member`` is, from 0: the stream's attachments
    are listed in order, right after the part that carries them."""
    return sum(1 for part in parts[member.parent : member.index] if part.parent == member.parent)


def list_members(listing: PartList, part: MimePart) -> None:
    """List the attachments of ``part`` if it is TNEF (anything else is left alone)."""
    if part.is_multipart or not part.is_attachment or part.uuencoded:
        return
    if part.detected_type != _DETECTED:
        if declared(part.content_type, part.filenames):
            listing.flags.add("unreadable_tnef")
        return
    if part.body_end - part.body_start > TNEF_SCAN:
        listing.flags.add("unreadable_tnef")
        return
    data = transfer.decode(listing.raw[part.body_start : part.body_end], part.transfer_encoding)
    reader = tnef.Reader()
    # Depth first, as parts are numbered; a stack, not recursion, however deep.
    streams = [_members(listing, part, memoryview(data), reader)]
    while streams:
        member, nested = next(streams[-1], (None, None))
        if member is None:
            streams.pop()
        elif nested is not None:
            streams.append(_members(listing, member, nested, reader))


def _members(
    listing: PartList, carrier: MimePart, data: memoryview, reader: tnef.Reader
) -> Iterator[tuple[MimePart, memoryview | None]]:
    """List the attachments of the stream ``data`` below ``carrier``, one at a time:
    each with the stream it is itself, if any, to be listed before the next."""
    found = reader.read(data, listing.room())
    if not found.readable:
        listing.flags.add("unreadable_tnef")
    span = (carrier.body_start, carrier.body_start, carrier.body_end)  # as uuencoded files'
    for number, attachment in enumerate(found.attachments, 1):
        file = EmbeddedFile(
            names=[("filename", name) for name in attachment.names],
            content_type=media_type(
                (attachment.content_type or "").strip().lower(), "application/octet-stream", set()
            ),
            encoding=ENCODING,
            disposition="attachment",
            span=span,
            encoded_size=len(attachment.data),
            decoded_size=len(attachment.data),
            head=attachment.head,
            read=magic.reader(attachment.data),
        )
        more = found.more and number == len(found.attachments)
        for member in listing.add_embedded(carrier, [file], more, number):
            yield member, attachment.nested
