"""Why the send API refuses a request: stable codes that carry their HTTP status.

Field problems are collected into a list and raised together as one
:class:`~postwarden_admin_api.errors.ApiError`: its status and code are those
of the most serious problem (403 before 413 before 422), and ``details``
lists every problem with its field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from postwarden_admin_api.errors import ApiError


class Refusal(enum.Enum):
    OUTBOUND_DISABLED = ("outbound_disabled", 503, "outbound mail is disabled")
    RELAY_NOT_CONFIGURED = ("relay_not_configured", 503, "no relay is configured")
    HASH_KEY_UNREADABLE = (
        "hash_key_unreadable", 503,
        "recipient_hash_key is set but this instance cannot decrypt it",
    )
    SENDER_NOT_ALLOWED = ("sender_not_allowed", 403, "this key may not send as this sender")
    BODY_TOO_LARGE = ("body_too_large", 413, "the body is too large")
    MESSAGE_TOO_LARGE = ("message_too_large", 413, "the message is too large")
    HEADER_TOO_LARGE = ("header_too_large", 413, "an address header is too large")
    INVALID_FIELD = ("invalid_field", 422, "the field is invalid")
    INVALID_RECIPIENT = ("invalid_recipient", 422, "the recipient is invalid")
    TOO_MANY_RECIPIENTS = ("too_many_recipients", 422, "too many recipients")
    RECIPIENT_SUPPRESSED = ("recipient_suppressed", 422, "the recipient is suppressed")
    INVALID_SUBJECT = ("invalid_subject", 422, "the subject is invalid")
    INVALID_HEADER = ("invalid_header", 422, "the header is not allowed")
    EMPTY_BODY = ("empty_body", 422, "text or html is required")
    ATTACHMENT_NOT_ALLOWED = ("attachment_not_allowed", 422, "this attachment is not allowed")
    RATE_LIMITED = ("rate_limited", 429, "too many messages for this key this minute")
    RECIPIENT_RATE_LIMITED = (
        "recipient_rate_limited", 429, "too many messages for this recipient today"
    )
    DAILY_QUOTA_EXCEEDED = ("daily_quota_exceeded", 429, "the daily quota of this key is used up")
    IDEMPOTENCY_KEY_REUSED = (
        "idempotency_key_reused", 422, "this Idempotency-Key was used for another request",
        None, ("Idempotency-Key", "used in the last 24 hours for a request with another body: "
                                  "a new request needs a new key"),
    )
    # A running twin is done within a second or so: the retry then gets its answer.
    IDEMPOTENCY_IN_PROGRESS = (
        "idempotency_request_in_progress", 409, "a request with this Idempotency-Key is running",
        "1",
    )

    def __init__(
        self, code: str, status: int, message: str, retry_after: str | None = None,
        field: tuple[str, str] | None = None,
    ) -> None:
        self.code = code
        self.status = status
        self.message = message
        self.retry_after = retry_after  # the Retry-After of a refusal that passes by itself
        self.field = field  # (field, detail) of a refusal about one field, raised on its own

    def error(self, headers: dict[str, str] | None = None,
              details: list[dict[str, Any]] | None = None) -> ApiError:
        if headers is None and self.retry_after is not None:
            headers = {"Retry-After": self.retry_after}
        details = list(details or ())
        if self.field is not None:
            name, detail = self.field
            details.append(FieldProblem(name, self, detail).as_detail())
        return ApiError(self.status, self.code, self.message, details, headers=headers)


_SEVERITY = {403: 0, 413: 1, 422: 2}


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str
    refusal: Refusal
    detail: str

    def as_detail(self) -> dict[str, Any]:
        return {"field": self.field, "code": self.refusal.code, "message": self.detail}


def refuse(problems: list[FieldProblem]) -> ApiError:
    """One error for every problem found; the most serious one names status and code."""
    worst = min(problems, key=lambda p: _SEVERITY.get(p.refusal.status, 3))
    return ApiError(
        worst.refusal.status,
        worst.refusal.code,
        worst.refusal.message,
        [problem.as_detail() for problem in problems],
    )
