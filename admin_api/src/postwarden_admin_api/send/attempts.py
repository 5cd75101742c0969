"""The log line every send attempt leaves, accepted or refused.

It names the key id, the sender, the recipient count, the masked recipients,
the outcome and the error code; never the body, never the API key. Values
come from the raw request (it may be refused as malformed): the sender is
logged only as the address it parses to ("-" if none), the recipients
masked, truncated and ``repr``-quoted, so that no CR or LF can forge a log line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from postwarden_admin_api.addresses import AddressError, mask, parse_mailbox

log = logging.getLogger("postwarden_admin_api.send.attempts")

MAX_LOGGED_RECIPIENTS = 10
MAX_FIELD = 120


def _address(value: Any) -> str:
    """The address alone, or "-": what is no address (a mistyped field, a secret pasted
    into it) is not logged."""
    try:
        return parse_mailbox(value).address if isinstance(value, str) else "-"
    except AddressError:
        return "-"


def _listed(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [item for item in items if isinstance(item, str)]


@dataclass
class Attempt:
    key_id: str
    sender: str = "-"
    recipients: list[str] = field(default_factory=list)

    def describe(self, body: dict[str, Any]) -> None:
        self.sender = _address(body.get("from"))
        self.recipients = [
            item for name in ("to", "cc", "bcc") for item in _listed(body.get(name))
        ]

    def log(self, outcome: str, error: str | None = None) -> None:
        masked = [mask(r.strip()[:MAX_FIELD]) for r in self.recipients[:MAX_LOGGED_RECIPIENTS]]
        level = logging.INFO if error is None else logging.WARNING
        log.log(
            level, "send attempt key=%s sender=%s recipients=%d to=%r outcome=%s error=%s",
            self.key_id, self.sender, len(self.recipients), masked, outcome, error or "-",
        )
