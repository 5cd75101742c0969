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


# Postfix holds its queue file, not the message, to message_size_limit: the message
# with its Received header (naming hosts) and the milter's, and the envelope's records,
# which hold the sender and each recipient's address three times (four for a message to
# one, whose Received header names it). A message the API took up to max_message_bytes
# (Postfix's limit, as advised) then failed with 552 5.3.4 "Message file too big".
QUEUE_FILE_ROOM = 2048  # the Received and milter headers, the envelope's other records
ADDRESS_ROOM = 64  # the records around each address's four copies


def postfix_room(request: SendRequest) -> int:
    """Bytes Postfix adds to the built message before it compares it with its limit
    (an upper bound)."""
    return QUEUE_FILE_ROOM + sum(4 * len(mailbox.address) + ADDRESS_ROOM
                                 for mailbox in (request.sender, *request.recipients))


def check_size(content: bytes, request: SendRequest, runtime: RuntimeSettings) -> None:
    """The built message, with what Postfix adds to it, within ``max_message_bytes``.
    Its detail names no field: every field makes its size, and none is over a limit of
    its own."""
    if len(content) + postfix_room(request) > runtime.max_message_bytes:
        raise Refusal.MESSAGE_TOO_LARGE.error(details=[{
            "code": Refusal.MESSAGE_TOO_LARGE.code,
            "message": "the built message, with what Postfix adds to it (its Received "
                       "header, the envelope), is larger than "
                       f"{runtime.max_message_bytes} bytes",
        }])


# Postfix drops the end of a longer header field and delivers the rest, unlogged: with a
# milter (ours), past about 60,000 bytes (3.7: a To of 800 mailboxes kept 422), without
# one, past header_size_limit (102400). The default 50 addresses with long names outside
# ASCII get there; no header but To, Cc and Reply-To can (a References is at most 8000).
MAX_ADDRESS_HEADER = 60_000
ADDRESS_HEADER_FIELDS = {b"to": "to", b"cc": "cc", b"reply-to": "reply_to"}


def check_address_headers(content: bytes) -> None:
    """Each of To, Cc and Reply-To of the built message within MAX_ADDRESS_HEADER."""
    problems = [
        FieldProblem(ADDRESS_HEADER_FIELDS[name], Refusal.HEADER_TOO_LARGE,
                     f"its header would be {size} bytes, more than Postfix keeps whole "
                     f"({MAX_ADDRESS_HEADER}): give fewer addresses or shorter names, or "
                     "send several messages (bcc is written to no header)")
        for name, size in _field_sizes(content) if name in ADDRESS_HEADER_FIELDS
        and size > MAX_ADDRESS_HEADER
    ]
    if problems:
        raise refuse(problems)


def _field_sizes(content: bytes) -> list[tuple[bytes, int]]:
    """(lower-case name, bytes with its folds and line ends) of each top-level field."""
    sizes: list[tuple[bytes, int]] = []
    head = content[:content.find(b"\r\n\r\n")]  # not the body's copy: it may be 10 MB
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and sizes:
            sizes[-1] = (sizes[-1][0], sizes[-1][1] + len(line) + 2)
        else:
            sizes.append((line.split(b":", 1)[0].lower(), len(line) + 2))
    return sizes


def recipient_fields(request: SendRequest, keys: Collection[str]) -> list[str]:
    """Each field (``to[3]``) whose recipient's key is one of ``keys``, in request order."""
    return [
        request.place(name, index)
        for name, mailboxes in (("to", request.to), ("cc", request.cc), ("bcc", request.bcc))
        for index, mailbox in enumerate(mailboxes)
        if mailbox.key in keys
    ]


def suppressed_refusal(request: SendRequest, suppressed: set[str]) -> ApiError:
    """The refusal naming each field whose recipient is on the suppression list."""
    return refuse([FieldProblem(field, Refusal.RECIPIENT_SUPPRESSED, "on the suppression list")
                   for field in recipient_fields(request, suppressed)])
