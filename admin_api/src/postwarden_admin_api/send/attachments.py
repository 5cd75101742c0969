"""Which attachments the send API refuses: by name, by declared type and by content.

The declared name and type come from the client and can lie, so the first
bytes are checked too: an executable renamed to ``report.pdf`` is still an
executable.
"""

from __future__ import annotations

BLOCKED_EXTENSIONS = frozenset({
    "ade", "adp", "apk", "app", "appx", "bat", "cab", "chm", "cmd", "com", "cpl", "dll",
    "dmg", "exe", "hta", "inf", "ins", "iso", "jar", "js", "jse", "lnk", "msc", "msi",
    "msix", "msp", "mst", "pif", "ps1", "psm1", "reg", "scf", "scr", "sct", "sh", "shb",
    "sys", "vb", "vbe", "vbs", "vhd", "vhdx", "wsc", "wsf", "wsh", "xll",
})
BLOCKED_TYPES = frozenset({
    "application/x-msdownload", "application/x-msdos-program", "application/x-dosexec",
    "application/x-executable", "application/x-elf", "application/x-mach-binary",
    "application/x-sh", "application/x-shellscript", "application/java-archive",
    "application/javascript", "text/javascript", "application/x-ms-shortcut",
    "application/hta", "application/x-msi", "application/vnd.microsoft.portable-executable",
})
# Leading bytes of executable formats.
BLOCKED_MAGIC = (
    (b"MZ", "a Windows executable"),
    (b"\x7fELF", "an ELF executable"),
    (b"\xca\xfe\xba\xbe", "a Mach-O or Java class file"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "a Mach-O executable"),
    (b"#!", "a script"),
    (b"L\x00\x00\x00\x01\x14\x02\x00", "a Windows shortcut"),
)


def refusal_reason(filename: str, content_type: str, content: bytes) -> str | None:
    """Why this attachment is refused, or None when it may be sent."""
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if extension in BLOCKED_EXTENSIONS:
        return f"files ending in .{extension} are not allowed"
    if content_type in BLOCKED_TYPES:
        return f"content type {content_type} is not allowed"
    for magic, what in BLOCKED_MAGIC:
        if content.startswith(magic):
            return f"the content is {what}"
    return None
