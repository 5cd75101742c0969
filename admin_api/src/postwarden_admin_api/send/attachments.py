"""Which attachments the send API refuses: by name, by declared type and by content.

The declared name and type come from the client and can lie, so the first
bytes are checked too: an executable renamed to ``report.pdf`` is still an
executable.
"""

from __future__ import annotations

from postwarden_policies import magic
from postwarden_policies.entityheaders import saved_names

BLOCKED_EXTENSIONS = frozenset({
    "ade", "adp", "apk", "app", "appref-ms", "appx", "bat", "cab", "chm", "cmd", "com",
    "cpl", "dll", "dmg", "exe", "hta", "img", "inf", "ins", "iso", "jar", "js", "jse", "lnk",
    "msc", "msi", "msix", "msp", "mst", "pif", "ps1", "psm1", "reg", "scf", "scr", "sct",
    "settingcontent-ms", "sh", "shb", "sys", "url", "vb", "vbe", "vbs", "vhd", "vhdx", "wsc",
    "wsf", "wsh", "xll",
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
# An ISO 9660 image (.iso/.img, opened by a double click on Windows): its first
# volume descriptor, at sector 16, starts with a type byte and "CD001".
ISO9660_MARK = (0x8001, b"CD001")


def _extensions(filename: str) -> list[str]:
    """The extensions ``filename``, or a copy a reader saves of it, may end in."""
    names = (filename, *saved_names(filename))
    return [name.rsplit(".", 1)[-1].lower() for name in names if "." in name]


def refusal_reason(filename: str, content_type: str, content: bytes) -> str | None:
    """Why this attachment is refused, or None when it may be sent."""
    for extension in _extensions(filename):
        if extension in BLOCKED_EXTENSIONS:
            return f"files ending in .{extension} are not allowed"
    if content_type in BLOCKED_TYPES:
        return f"content type {content_type} is not allowed"
    if content_type.startswith(STRUCTURED_TYPES):
        return f"a {content_type.partition('/')[0]} cannot be attached: send it as a file"
    detected = magic.detect(content)
    if detected in BLOCKED_CONTENT:
        return f"the content is {detected}"
    offset, mark = ISO9660_MARK
    if content[offset:offset + len(mark)] == mark:
        return "the content is a disk image"
    return None
