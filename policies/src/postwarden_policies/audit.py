"""The audit event: one per SMTP transaction, written by the milter's pipeline.

It is a plain frozen value with a JSON form, so the spool file (JSON lines)
and the Postgres COPY writer share one definition. ``event_id`` is unique per
transaction and makes replays idempotent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AuditEvent:
    event_id: str  # uuid4 hex, unique per transaction
    time: dt.datetime  # timezone-aware UTC
    instance: str  # milter instance name
    queue_id: str | None
    message_uid: str  # our id (X-Postwarden-Id)
    client_address: str | None
    client_name: str | None
    helo: str | None
    auth_user: str | None
    sender: str
    recipients: tuple[str, ...]
    header_from: str | None
    message_id: str | None
    subject: str | None  # redacted and truncated
    size: int
    action: str  # accept | reject | tempfail | discard | quarantine | aborted | error
    smtp_reply: str | None
    rules: tuple[str, ...]
    changes: tuple[dict[str, Any], ...]  # stripped attachments, sanitized parts
    policy_hash: str
    duration_ms: float
    flags: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()  # webhook endpoint names raised by the policy

    def to_json(self) -> str:
        # Not dataclasses.asdict: its deep copy of every value took four fifths of the
        # time, and json.dumps only reads them.
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["time"] = self.time.isoformat()
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> AuditEvent:
        data = json.loads(line)
        data["time"] = dt.datetime.fromisoformat(data["time"])
        for key in ("recipients", "rules", "changes", "flags", "notify"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)


_FIELD_NAMES = tuple(field.name for field in dataclasses.fields(AuditEvent))
