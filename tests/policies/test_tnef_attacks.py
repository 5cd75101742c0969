"""A hostile sender against the TNEF reader (the review of 5 December): a named MAPI
property's number (MNID_ID) must be skipped as Outlook skips it (MS-OXTNEF 2.1.3.5),
and the code page is the message's (attOemCodepage, a message attribute)."""

from __future__ import annotations

import struct

from postwarden_policies import Reject, evaluate_message, load_policy_set, parse_message
from postwarden_policies.tnef import Reader

from .test_tnef import (
    ENV,
    INBOUND,
    INVOICE,
    NOTE,
    _attachment,
    _attribute,
    _mail,
    _padded,
    _stream,
    _string8,
)

_GUID = bytes(range(16))
_MNID_ID, _MNID_STRING = 0, 1


def _named_binary(number: int, value: bytes) -> bytes:
    """A named PT_BINARY property identified by a number, as Outlook writes it."""
    head = struct.pack("<HH", 0x0102, 0x8001) + _GUID + struct.pack("<II", _MNID_ID, number)
    return head + struct.pack("<II", 1, len(value)) + _padded(value)


def _names(stream: bytes) -> list[list[str]]:
    listing = Reader().read(memoryview(stream), 10)
    assert listing.readable
    return [attachment.names for attachment in listing.attachments]


def test_a_named_property_does_not_hide_the_long_file_name_after_it() -> None:
    """Read without skipping its number, a named property's bytes were read as a
    property whose value covered the long file name Outlook opens the file by."""
    long_name = _string8(0x3707, "evil.js")
    # To a reader 4 bytes behind: a PT_BINARY (id 1, one value) as long as what follows.
    decoy = struct.pack("<HHII", 0x0102, 0x0001, 1, len(long_name))
    stream = _stream(_attachment("invoice.txt", b"x", _named_binary(1, decoy), long_name))
    assert _names(stream) == [["invoice.txt", "evil.js"]]
    member = parse_message(_mail(stream), ENV).parts[-1]
    assert member.filenames == ("invoice.txt", "evil.js")


def test_named_properties_of_either_kind_are_read_past() -> None:
    by_name = "Tag".encode("utf-16-le") + b"\0\0"
    named_string = (struct.pack("<HH", 0x0003, 0x8002) + _GUID
                    + struct.pack("<II", _MNID_STRING, len(by_name)) + _padded(by_name)
                    + struct.pack("<I", 7))
    stream = _stream(_attachment(None, b"x", _named_binary(0x8510, b"abc"), named_string,
                                 _string8(0x3707, "report.pdf")))
    assert _names(stream) == [["report.pdf"]]


def test_a_named_property_of_an_unknown_kind_makes_the_stream_unreadable() -> None:
    odd = struct.pack("<HH", 0x0003, 0x8003) + _GUID + struct.pack("<III", 2, 0, 0)
    stream = _stream(_attachment("a.txt", b"x", odd, _string8(0x3707, "evil.js")))
    assert not Reader().read(memoryview(stream), 10).readable


def test_a_code_page_among_a_files_attributes_does_not_garble_the_next_name() -> None:
    """EBCDIC (code page 500) read from a level-2 attribute turned "evil.js" into
    "\xc1\xce\xd1%..." for the filename rules; Outlook reads no such attribute there."""
    code_page = _attribute(2, 0x00069007, struct.pack("<II", 500, 0))
    stream = _stream(_attachment("readme.txt", b"hi") + code_page, _attachment("evil.js", b"x"))
    assert _names(stream) == [["readme.txt"], ["evil.js"]]


def test_the_message_code_page_still_reads_names() -> None:
    code_page = _attribute(1, 0x00069007, struct.pack("<II", 1251, 0))
    title = _attribute(2, 0x00018010, "отчёт.pdf".encode("cp1251") + b"\0")
    stream = _stream(code_page + _attachment(None, b"x") + title)
    assert _names(stream) == [["отчёт.pdf"]]


def test_without_a_code_page_names_are_read_in_437_as_outlook_reads_them() -> None:
    """MAPI's GetTnefStreamCodepage answers 437 for a stream without attOemCodepage:
    byte 0x82 is "é" there (in 1252 it is a low quotation mark)."""
    title = _attribute(2, 0x00018010, "résumé.pdf".encode("cp437") + b"\0")
    stream = _stream(_attachment(None, b"x") + title)
    assert _names(stream) == [["résumé.pdf"]]


def _retyped(attachment: bytes, ident: int) -> bytes:
    """``attachment`` with its attAttachRendData's type half changed: same id."""
    return attachment[:1] + struct.pack("<I", ident) + attachment[5:]


def test_a_start_of_attachment_of_another_type_still_starts_it() -> None:
    """The review of 6 December: attAttachRendData as 0x00019002 (its id, another type)
    started no attachment, so its executable was listed nowhere, and readers that tell
    attributes by id (tnefparse) extract it."""
    stream = _stream(NOTE, _retyped(INVOICE, 0x00019002))
    assert _names(stream) == [["notes.txt"], ["INVOIC~1.EXE", "invoice.pdf.exe"]]
    verdict = evaluate_message(load_policy_set([INBOUND]), _mail(stream), ENV)
    assert isinstance(verdict.decision, Reject)
    assert verdict.rules[0] == "block-executables"


def test_an_attachments_attribute_before_any_attachment_makes_the_stream_unreadable(
) -> None:
    """Its start record dropped, the executable's title and data came with no attachment
    to hold them: skipped in silence, where a reader may yet extract them."""
    without_start = INVOICE[len(_attribute(2, 0x00069002, bytes(14))):]
    listing = Reader().read(memoryview(_stream(without_start)), 10)
    assert not listing.readable and listing.attachments == []
