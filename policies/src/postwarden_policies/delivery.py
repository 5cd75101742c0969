"""The message as it would be delivered: a verdict's edits applied to raw bytes.

Header edits follow libmilter's semantics (``addheader`` appends,
``chgheader`` replaces the n-th occurrence or appends when there is none, an
empty value deletes). Untouched header fields and the body are copied byte
for byte. Recipient edits belong to the envelope and do not show here.
"""

from __future__ import annotations

from .verdicts import AddHeader, ChangeHeader, RemoveHeader, ReplaceBody, Verdict


def _split(raw: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(header fields with their line ends, the newline used, the body after the blank line)."""
    newline = b"\r\n" if b"\r\n" in raw[: raw.find(b"\n") + 1] else b"\n"
    if raw.startswith(newline):
        return [], newline, raw[len(newline) :]
    end = raw.find(newline + newline)
    head, body = (
        (raw, b"") if end < 0 else (raw[: end + len(newline)], raw[end + 2 * len(newline) :])
    )
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    if fields and not fields[-1].endswith(b"\n"):
        fields[-1] += newline
    return fields, newline, body


def _name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


def _field(name: str, value: str, newline: bytes) -> bytes:
    return f"{name}: {value}".encode("utf-8", "surrogateescape") + newline


def apply_edits(raw: bytes, verdict: Verdict) -> bytes:
    """The delivered message; without edits, ``raw`` itself."""
    if not verdict.edits:
        return raw
    fields, newline, body = _split(raw)
    for edit in verdict.edits:
        if isinstance(edit, AddHeader):
            fields.append(_field(edit.name, edit.value, newline))
        elif isinstance(edit, RemoveHeader):
            wanted = edit.name.lower().encode("ascii")
            fields = [f for f in fields if _name(f) != wanted]
        elif isinstance(edit, ChangeHeader):
            fields = _change(fields, edit, newline)
        elif isinstance(edit, ReplaceBody):
            body = edit.body if newline == b"\r\n" else edit.body.replace(b"\r\n", b"\n")
    return b"".join(fields) + newline + body


def _change(fields: list[bytes], edit: ChangeHeader, newline: bytes) -> list[bytes]:
    wanted = edit.name.lower().encode("ascii")
    seen = 0
    for position, field in enumerate(fields):
        if _name(field) == wanted:
            seen += 1
            if seen == edit.index:
                replacement = [_field(edit.name, edit.value, newline)] if edit.value else []
                return fields[:position] + replacement + fields[position + 1 :]
    return [*fields, _field(edit.name, edit.value, newline)] if edit.value else fields
