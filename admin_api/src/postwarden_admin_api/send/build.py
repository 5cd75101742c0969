"""Turn a validated :class:`SendRequest` into the bytes handed to Postfix.

Built with ``email.message.EmailMessage`` under the SMTP policy (CRLF line
ends) with 7-bit transfer encodings, so the message passes any relay. The
header names of the result are split out the way an MTA reads them and
compared with the ones we set: a
header that appeared from nowhere (an injection through some field) stops
the build instead of reaching Postfix.
"""

from __future__ import annotations

import datetime as dt
import uuid
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime

from .addresses import Mailbox, parse_mailbox
from .request_model import SendRequest


class _CachingRegistry(HeaderRegistry):
    """HeaderRegistry builds a new class on every lookup (a quarter of a millisecond
    each, most of the build time); the classes are kept here, for a bounded set of names."""

    MAX_CACHED = 256

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        found = self._classes.get(key)
        if found is None:
            found = super().__getitem__(name)
            if len(self._classes) < self.MAX_CACHED:
                self._classes[key] = found
        return found


POLICY = policy.SMTP.clone(cte_type="7bit", header_factory=_CachingRegistry())


class BuildError(RuntimeError):
    """The built message does not have exactly the headers we set (a bug, never a client error)."""


def new_message_id(sender: Mailbox) -> str:
    return f"<{uuid.uuid4().hex}@{sender.domain}>"


def _address(mailbox: Mailbox) -> Address:
    return Address(mailbox.display_name, mailbox.local, mailbox.domain)


def build_message(request: SendRequest, message_id: str, now: dt.datetime) -> bytes:
    message = EmailMessage(policy=POLICY)
    message["From"] = _address(request.sender)
    if request.to:
        message["To"] = [_address(m) for m in request.to]
    if request.cc:
        message["Cc"] = [_address(m) for m in request.cc]
    if request.reply_to:
        message["Reply-To"] = [_address(m) for m in request.reply_to]
    message["Subject"] = request.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    for name, value in request.headers:
        message[name] = _address(parse_mailbox(value)) if name == "Sender" else value
    if request.text is not None:
        message.set_content(request.text)
        if request.html is not None:
            message.add_alternative(request.html, subtype="html")
    elif request.html is not None:
        message.set_content(request.html, subtype="html")
    for attachment in request.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    expected = [name.lower() for name in message]
    data = message.as_bytes()
    _check_headers(data, expected)
    return data


def header_names(data: bytes) -> list[str]:
    """The top-level header names as a receiving MTA splits them (folded lines excluded)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[0].decode("ascii", "replace").lower()
        for line in head.split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t")
    ]


def _check_headers(data: bytes, expected: list[str]) -> None:
    head = data.split(b"\r\n\r\n", 1)[0]
    bare_breaks = b"\r" in head.replace(b"\r\n", b"") or b"\n" in head.replace(b"\r\n", b"")
    if header_names(data) != expected or bare_breaks or b"\r\n\r\n" not in data:
        raise BuildError("the built message has headers that were not set")
