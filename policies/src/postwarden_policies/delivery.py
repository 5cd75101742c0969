"""The message as it would be delivered: a verdict's edits applied to raw bytes.

Header edits follow libmilter's semantics (``addheader`` appends,
``chgheader`` replaces the n-th occurrence or appends when there is none, an
empty value deletes). Untouched header fields and the body are copied byte
for byte. Recipient edits belong to the envelope and do not show here.
"""

from __future__ import annotations

import re
import sys

from .headers import parse_header_section
from .verdicts import AddHeader, ChangeHeader, RemoveHeader, ReplaceBody, Verdict

_LINES = re.compile(rb"[^\n]*\n|[^\n]+")  # each with its LF, the last one maybe without


def _split(raw: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(header fields with their line ends, the newline used, the body after the blank line).

    The header section ends where the parser (and Postfix) ends it: at the first
    empty line, whatever its line end, or at the first line that is no field. Its fields
    are Postfix's, whose lines end at LF: one written after a lone CR is text of the field
    before, as to chgheader's index (headeredits), which would change it otherwise.
    """
    newline = b"\r\n" if b"\r\n" in raw[: raw.find(b"\n") + 1] else b"\n"
    # Every field, past the parser's cap too: added headers go after the last one.
    section = parse_header_section(raw, 0, len(raw), set(), limit=sys.maxsize,
                                   octets=sys.maxsize)
    lines = _LINES.findall(raw, 0, section.body_start)
    if lines and not lines[-1].strip(b"\r\n"):
        lines.pop()  # the blank line
    fields: list[bytes] = []
    for line in lines:
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    if fields and not fields[-1].endswith(b"\n"):  # a bare CR would merge with the blank line
        fields[-1] += newline
    return fields, newline, raw[section.body_start :]


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
