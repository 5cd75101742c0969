"""The parts the MIME parser has found so far, its caps on them, and files listed
below a part that are no MIME entities of their own.

Files uuencoded in a text part (:mod:`postwarden_policies.textparts`) and the
attachments inside a TNEF ``winmail.dat`` (:mod:`postwarden_policies.tnefparts`)
are listed as attachments below the part that carries them, paths "P.1",
"P.2", ..., with ``MimePart.uuencoded`` set: rules see them; they cannot be
stripped or sanitized apart from their carrier, except a TNEF's files, which
are stripped from its stream (:mod:`postwarden_policies.tnefrewrite`). They
count against ``max_parts`` and ``max_depth`` like parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from postwarden_policies import entityheaders, magic
from postwarden_policies.facts import MimePart


@dataclass(frozen=True, slots=True)
class EmbeddedFile:
    """A file inside a part's content, as its reader would list it."""

    names: list[tuple[str, str]]  # (parameter, name) pairs, as file_names reads them
    content_type: str
    encoding: str  # how it is held in its carrier ("x-uuencode", "x-tnef", ...)
    disposition: str
    span: tuple[int, int, int]  # header_start, body_start, body_end in the message
    encoded_size: int
    decoded_size: int
    head: bytes  # its first decoded bytes, for the detected type
    read: magic.Reader | None = None  # its marks past the head, when it is held whole


@dataclass(slots=True)
class PartList:
    raw: bytes
    flags: set[str]
    max_parts: int
    max_depth: int
    parts: list[MimePart]

    def room(self) -> int:
        """How many more parts may be listed."""
        return max(0, self.max_parts - len(self.parts))

    def add_embedded(
        self, carrier: MimePart, files: list[EmbeddedFile], more: bool, first: int = 1
    ) -> list[MimePart]:
        """List ``files`` below ``carrier``, numbered from ``first`` (``more``: some did
        not fit the room left); returns the parts listed, none at the depth limit."""
        if more:
            self.flags.add("too_many_parts")
        if files and carrier.depth >= self.max_depth:
            self.flags.add("too_deep")
            return []
        listed = len(self.parts)
        for number, file in enumerate(files, first):
            filenames = entityheaders.file_names(None, file.names, self.flags)
            header_start, body_start, body_end = file.span
            self.parts.append(
                MimePart(
                    index=len(self.parts),
                    path=f"{carrier.path}.{number}" if carrier.path else str(number),
                    depth=carrier.depth + 1,
                    parent=carrier.index,
                    content_type=file.content_type,
                    charset=None,
                    transfer_encoding=file.encoding,
                    disposition=file.disposition,
                    filename=filenames[0] if filenames else None,
                    filenames=filenames,
                    is_multipart=False,
                    is_attachment=True,
                    header_start=header_start,
                    body_start=body_start,
                    body_end=body_end,
                    encoded_size=file.encoded_size,
                    decoded_size=file.decoded_size,
                    detected_type=magic.detect(file.head, file.read),
                    in_signed=carrier.in_signed,
                    uuencoded=True,
                )
            )
        return self.parts[listed:]
