"""Which attachments the send API refuses: by name, by declared type and by content.

The declared name and type come from the client and can lie, so the first
bytes are checked too: an executable renamed to ``report.pdf`` is still an
executable.

A TNEF attachment (Outlook's ``winmail.dat``) is read through as the milter
reads it (:mod:`postwarden_policies.tnefparts`): each file inside, those of an
attached Outlook message included, is checked by its names, declared type and
content like an attachment of its own (the refusal names it); a TNEF that
cannot be read to its end is refused, since what was not read could hide anything.
S/MIME signed data (a ``.p7m``, by its content) is read through the same way: readers
show what it holds, the milter lists it (:mod:`postwarden_policies.mimetree`). So are
the files uuencoded, yEncoded or BinHexed in plain text (the text body, a text/plain
attachment), which the milter and Thunderbird list as attachments of their own
(:mod:`postwarden_policies.textparts`). The BinHex reads of a request (in its texts and
in the signed data it carries) share one ``uuencode.Budget``, as the milter's reads of
its message do: past it the milter flags the message ``unscanned_text`` (malformed).
"""

from __future__ import annotations

from postwarden_policies import Envelope, magic, parse_message, textparts, tnef, tnefparts, uuencode
from postwarden_policies.entityheaders import BIDI_OVERRIDE, file_names, media_type, saved_names
from postwarden_policies.mimetree import decoded_content

BLOCKED_EXTENSIONS = frozenset({
    "ade", "adp", "apk", "app", "appinstaller", "appref-ms", "appx", "appxbundle", "bat",
    "cab", "chm", "cmd", "com", "cpl", "diagcab", "dll", "dmg", "exe", "hta", "img", "inf",
    "ins", "iso", "jar", "jnlp", "js", "jse", "library-ms", "lnk", "msc", "msi", "msix",
    "msixbundle", "msp", "mst", "one", "onepkg", "pif", "ps1", "psm1", "reg", "scf", "scr",
    "sct", "search-ms", "searchconnector-ms", "settingcontent-ms", "sh", "shb", "sys", "url",
    "vb", "vbe", "vbs", "vhd", "vhdx", "vxd", "wsc", "wsf", "wsh", "xll",
})
BLOCKED_TYPES = frozenset({
    "application/x-msdownload", "application/x-msdos-program", "application/x-dosexec",
    "application/x-executable", "application/x-elf", "application/x-mach-binary",
    "application/x-sh", "application/x-shellscript", "application/java-archive",
    "application/javascript", "text/javascript", "application/x-javascript",
    "application/x-ms-shortcut", "application/hta", "application/x-msi",
    "application/vnd.microsoft.portable-executable", "text/vbscript", "application/x-vbscript",
    "application/x-bat", "application/x-msdos-batch", "text/x-sh", "application/x-csh",
})
# A message or a multipart is structure, not a file: the email package would
# base64 it (which RFC 2046 forbids for both), and the checks here could not
# look inside it.
STRUCTURED_TYPES = ("message/", "multipart/")
# Content types the milter's magic detection (postwarden_policies.magic) gives
# executables and shortcuts, whatever the client declared.
BLOCKED_CONTENT = frozenset({
    "application/x-dosexec", "application/x-executable", "application/x-mach-binary",
    "application/java-vm", "application/java-archive", "application/x-ms-shortcut",
    "text/x-shellscript",
})
# Files Windows opens with a double click into something that runs what they hold, by
# the type the milter detects (postwarden_policies.magic, which reads their marks: an
# ISO 9660 image's volume descriptor, a VHD's footer ...), and what the refusal calls them.
BLOCKED_CARRIERS = {
    magic.ISO9660: "a disk image",
    "application/x-vhdx": "a virtual disk",
    magic.VHD: "a virtual disk",
    "application/onenote": "a OneNote file",  # phishing's carrier since 2023
    "application/vnd.ms-htmlhelp": "compiled HTML help",
}
# Files read inside one TNEF attachment, nested ones included (the reader's own
# budget bounds the work): past them the rest goes unchecked, so it is refused.
MAX_TNEF_FILES = 1000
# Files read in one plain text: past them the rest goes unchecked, so it is refused.
MAX_EMBEDDED_FILES = 1000
SHOWN_NAME = 100  # characters of an inner file's name given back in a refusal
UNREADABLE_TNEF = "a TNEF (winmail.dat) that cannot be read to its end: its files go unchecked"
UNREADABLE_SIGNED = "S/MIME signed data that cannot be read to its end: its files go unchecked"
UNCHECKED_EMBEDDED = (f"more than {MAX_EMBEDDED_FILES} files uuencoded, yEncoded or BinHexed "
                      "in this text: the rest would go unchecked")
UNREAD_BINHEX = ("files BinHexed in this text cost more to read, with those in the "
                 "request's other texts, than one message may: the rest would go unchecked")


def _extensions(filename: str) -> list[str]:
    """The extensions ``filename``, or a copy a reader saves of it, may end in, in any
    case: upper-cased first, as Windows and the milter's globs compare, which take a
    long s for an s (".\u017fcr" is .scr) and a dotless i for an i, as lower() alone does not."""
    names = (filename, *saved_names(filename))
    return [name.rsplit(".", 1)[-1].upper().lower() for name in names if "." in name]


def _name_reason(filename: str) -> str | None:
    for extension in _extensions(filename):
        if extension in BLOCKED_EXTENSIONS:
            return f"files ending in .{extension} are not allowed"
    # "invoice\u202efdp.exe" shows as invoiceexe.pdf: the milter flags it bidi_override
    # (a top-level name is refused as the field's problem already: request_model).
    if BIDI_OVERRIDE.search(filename):
        return "its name holds a bidi override, which shows its letters in another order"
    return None


def _type_reason(content_type: str) -> str | None:
    if content_type in BLOCKED_TYPES:
        return f"content type {content_type} is not allowed"
    return None


def _detected_reason(detected: str | None) -> str | None:
    if detected in BLOCKED_CONTENT:
        return f"the content is {detected}"
    if detected in BLOCKED_CARRIERS:
        return f"the content is {BLOCKED_CARRIERS[detected]}"
    return None


def _content_reason(content: bytes | memoryview, budget: uuencode.Budget) -> str | None:
    """Why the bytes are refused, whatever the name and type say; only their head and
    the marks are read (a memoryview is not copied), and signed data through (its
    BinHex reads within ``budget``)."""
    detected = magic.detect(bytes(content[: magic.HEAD_BYTES]), magic.reader(content))
    if (reason := _detected_reason(detected)) is not None:
        return reason
    if detected == magic.SIGNED_DATA:
        return _signed_reason(bytes(content), budget)
    return None


def _is_tnef(filename: str, content_type: str, content: bytes) -> bool:
    return (tnefparts.declared(content_type, (filename, *saved_names(filename)))
            or content.startswith(tnef.SIGNATURE))


def _inner_reason(inner: tnef.Attachment, budget: uuencode.Budget) -> str | None:
    """Why a file inside a TNEF is refused, naming it; its names and type as the milter
    reads them."""
    names = file_names(None, [("filename", name) for name in inner.names], set())
    for name in names:
        if (reason := _name_reason(name)) is not None:
            return f"{_shown(name)} in this TNEF: {reason}"
    declared = (inner.content_type or "").strip().lower()
    reason = (_type_reason(media_type(declared, "application/octet-stream", set()))
              or _content_reason(inner.data, budget))
    if reason is None:
        return None
    return f"{_shown(names[0]) if names else 'a file without a name'} in this TNEF: {reason}"


def _shown(name: str) -> str:
    return repr(name if len(name) <= SHOWN_NAME else name[:SHOWN_NAME] + "...")


def _tnef_reason(content: bytes, budget: uuencode.Budget) -> str | None:
    """Why a file inside the TNEF ``content`` is refused, or that it cannot be read."""
    reader = tnef.Reader()  # one budget for the stream and the streams inside it
    streams = [memoryview(content)]
    room = MAX_TNEF_FILES
    while streams:  # a stack, not recursion, however deep they nest
        listing = reader.read(streams.pop(), room)
        room -= len(listing.attachments)
        for inner in listing.attachments:
            reason = _inner_reason(inner, budget)
            if reason is not None:
                return reason
            if inner.nested is not None:
                streams.append(inner.nested)
        if listing.more or not listing.readable:
            return UNREADABLE_TNEF
    return None


def _signed_reason(content: bytes, budget: uuencode.Budget) -> str | None:
    """Why a file inside the S/MIME signed data ``content`` is refused, naming it, as the
    milter lists them (signed data inside signed data too), or that it cannot be read:
    cut short, or its text not read to its end (its BinHex reads past ``budget``)."""
    found = decoded_content("signed_data", content, "binary")
    if found is None:  # a detached signature: nothing inside
        return None
    inner, complete = found
    facts = parse_message(inner, Envelope(), binhex=budget)
    if not complete or {"unreadable_smime", "unscanned_text"} & facts.flags:
        return UNREADABLE_SIGNED
    for part in facts.parts:
        if part.is_multipart:
            continue
        reason = next(filter(None, map(_name_reason, part.filenames)), None) or (
            _type_reason(part.content_type) or _detected_reason(part.detected_type))
        if reason is not None:
            shown = _shown(part.filename) if part.filename else "a file without a name"
            return f"{shown} in this signed data: {reason}"
    return None


def embedded_reason(text: bytes, budget: uuencode.Budget) -> str | None:
    """Why a file uuencoded, yEncoded or BinHexed in the plain ``text`` is refused, naming
    it, by its names and content as the milter lists it; or that its BinHex reads spent
    what was left of the request's ``budget`` (said once, on the text that spent it)."""
    unspent = not budget.spent
    found, more = uuencode.blocks(text, 0, len(text), MAX_EMBEDDED_FILES, budget)
    for block in found:
        names = file_names(None, textparts.embedded_names(block.name, set()), set())
        reason = (next(filter(None, map(_name_reason, names)), None)
                  or _detected_reason(magic.detect(block.head, block.read)))
        if reason is not None:
            shown = _shown(names[0]) if names else "a file without a name"
            return f"{shown} in this text: {reason}"
    if unspent and budget.spent:
        return UNREAD_BINHEX
    return UNCHECKED_EMBEDDED if more else None


def refusal_reason(
    filename: str, content_type: str, content: bytes, budget: uuencode.Budget
) -> str | None:
    """Why this attachment is refused, or None when it may be sent; its BinHex reads
    within the request's ``budget``."""
    # The name as given, and as the milter and mail readers read it off the header (a
    # trailing U+00A0 stripped, encoded words decoded): "run.bat\xa0" is run.bat.
    names = dict.fromkeys((filename, *file_names(None, [("filename", filename)], set())))
    reason = next(filter(None, map(_name_reason, names)), None) or _type_reason(content_type)
    if reason is not None:
        return reason
    if content_type.startswith(STRUCTURED_TYPES):
        return f"a {content_type.partition('/')[0]} cannot be attached: send it as a file"
    reason = _content_reason(content, budget)
    if reason is None and _is_tnef(filename, content_type, content):
        return _tnef_reason(content, budget)
    if reason is None and content_type == "text/plain":  # read as text, the milter's too
        return embedded_reason(content, budget)
    return reason
