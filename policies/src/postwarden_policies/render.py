"""Verdicts as JSON-ready dicts and as text lines, for the CLI and the admin API."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from .verdicts import (
    AddHeader,
    AttachmentStripped,
    Change,
    ChangeHeader,
    DeleteRecipient,
    Edit,
    HtmlSanitized,
    RemoveHeader,
    ReplaceBody,
    SignedHtmlKept,
    Verdict,
)


def edit_json(edit: Edit) -> dict[str, Any]:
    if isinstance(edit, ReplaceBody):  # the body itself is too large to show
        return {"type": "replace_body", "bytes": len(edit.body)}
    kind = {
        AddHeader: "add_header",
        RemoveHeader: "remove_header",
        ChangeHeader: "change_header",
        DeleteRecipient: "delete_recipient",
    }[type(edit)]
    return {"type": kind, **dataclasses.asdict(edit)}


_CHANGE_TYPES = {AttachmentStripped: "attachment_stripped", HtmlSanitized: "html_sanitized",
                 SignedHtmlKept: "signed_html_kept"}


def change_type(change: Change) -> str:
    return _CHANGE_TYPES[type(change)]


def change_json(change: Change) -> dict[str, Any]:
    data = dataclasses.asdict(change)
    if "removed" in data:
        data["removed"] = dict(data["removed"])
    return {"type": change_type(change), **data}


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    reply = verdict.smtp_reply
    decision = verdict.decision
    return {
        "action": verdict.action.value,
        "smtp_reply": str(reply) if reply else None,
        "quarantine_reason": getattr(decision, "reason", None),
        "rules": list(verdict.rules),
        "changes": [change_json(c) for c in verdict.changes],
        "edits": [edit_json(e) for e in verdict.edits],
        "flags": sorted(verdict.flags),
        "notify": list(verdict.notify),
        "report_only": verdict.report_only,
        "policy_hash": verdict.policy_hash,
    }


def _part(path: str) -> str:
    """A part by its MIME path; a message of one part has none (its path is "")."""
    return f"part {path}" if path else "the message body"


def _change_line(change: Change) -> str:
    if isinstance(change, AttachmentStripped):
        return (
            f"stripped {_part(change.part)} {change.filename!r} ({change.size} bytes, "
            f"sha256 {change.sha256}) by {change.reason}"
        )
    removed = ", ".join(f"{what} x{count}" for what, count in change.removed) or "nothing"
    if isinstance(change, SignedHtmlKept):
        return (f"kept signed part {change.part} as it came: sanitizing would only have "
                f"removed harmless {removed}")
    return (
        f"sanitized {_part(change.part)}: removed {removed} "
        f"({change.bytes_before} -> {change.bytes_after} bytes)"
    )


# A fold (a line break before a blank) reads as nothing; any other control character
# is shown escaped: a header value is the sender's text, and a terminal obeys escapes.
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def escaped(value: str) -> str:
    """``value`` with its control characters escaped (``\\n``, ``\\x1b``): one line, as a
    terminal can show it."""
    return _CONTROL.sub(lambda char: repr(char[0])[1:-1], value)


def _shown(value: str) -> str:
    """A header value on one line, as a terminal can show it."""
    return escaped(_FOLD.sub("", value))


def _edit_line(edit: Edit) -> str:
    if isinstance(edit, AddHeader):
        return f"add header {edit.name}: {_shown(edit.value)}"
    if isinstance(edit, RemoveHeader):
        return f"remove header {edit.name}"
    if isinstance(edit, ChangeHeader):
        return f"change header {edit.name}[{edit.index}]: {_shown(edit.value)}"
    if isinstance(edit, DeleteRecipient):
        return f"delete recipient {edit.address}"
    return f"replace body ({len(edit.body)} bytes)"


def verdict_lines(verdict: Verdict) -> list[str]:
    data = verdict_json(verdict)
    lines = [f"action: {data['action']}"]
    if data["smtp_reply"]:
        lines.append(f"reply: {data['smtp_reply']}")
    if data["quarantine_reason"]:
        lines.append(f"reason: {data['quarantine_reason']}")
    lines.append(f"rules: {', '.join(verdict.rules) or '(none)'}")
    for label, values in (("flags", data["flags"]), ("notify", data["notify"])):
        if values:
            lines.append(f"{label}: {', '.join(values)}")
    lines += [f"edit: {_edit_line(e)}" for e in verdict.edits]
    lines += [f"change: {_change_line(c)}" for c in verdict.changes]
    lines.append(f"policy: {verdict.policy_hash}")
    return lines
