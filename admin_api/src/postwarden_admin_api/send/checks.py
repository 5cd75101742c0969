"""Checks of a send request against the key, the runtime settings and the database."""

from __future__ import annotations

from collections.abc import Callable, Collection

from postwarden_admin_api.addresses import Mailbox, sender_matches
from postwarden_admin_api.errors import ApiError
from postwarden_admin_api.runtime_settings import RuntimeSettings

from .limits import Limits
from .refusals import FieldProblem, Refusal, refuse
from .request_model import Caps, SendRequest


def sender_allowed(
    key_senders: tuple[str, ...], global_senders: tuple[str, ...]
) -> Callable[[Mailbox], bool]:
    """The sender must be allowed by the key *and* by the global setting (empty: none)."""

    def allowed(mailbox: Mailbox) -> bool:
        return sender_matches(mailbox, key_senders) and sender_matches(mailbox, global_senders)

    return allowed


def caps_of(runtime: RuntimeSettings) -> Caps:
    return Caps(
        max_recipients=runtime.outbound_max_recipients,
        max_message_bytes=runtime.max_message_bytes,
        max_attachment_bytes=runtime.max_attachment_bytes,
    )


def limits_of(runtime: RuntimeSettings) -> Limits:
    return Limits(
        per_key_per_minute=runtime.outbound_per_key_per_minute,
        per_recipient_per_day=runtime.outbound_per_recipient_per_day,
        per_key_per_day=runtime.outbound_per_key_per_day,
    )


def check_size(content: bytes, runtime: RuntimeSettings) -> None:
    """The built message within ``max_message_bytes``. Its detail names no field:
    every field makes its size, and none is over a limit of its own."""
    if len(content) > runtime.max_message_bytes:
        raise Refusal.MESSAGE_TOO_LARGE.error(details=[{
            "code": Refusal.MESSAGE_TOO_LARGE.code,
            "message": f"the built message is larger than {runtime.max_message_bytes} bytes",
        }])


def recipient_fields(request: SendRequest, keys: Collection[str]) -> list[str]:
    """Each field (``to[3]``) whose recipient's key is one of ``keys``, in request order."""
    return [
        f"{name}[{index}]"
        for name, mailboxes in (("to", request.to), ("cc", request.cc), ("bcc", request.bcc))
        for index, mailbox in enumerate(mailboxes)
        if mailbox.key in keys
    ]


def suppressed_refusal(request: SendRequest, suppressed: set[str]) -> ApiError:
    """The refusal naming each field whose recipient is on the suppression list."""
    return refuse([FieldProblem(field, Refusal.RECIPIENT_SUPPRESSED, "on the suppression list")
                   for field in recipient_fields(request, suppressed)])
