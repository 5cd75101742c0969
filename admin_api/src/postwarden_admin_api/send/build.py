"""Turn a validated :class:`SendRequest` into the bytes handed to Postfix.

Built with ``email.message.EmailMessage`` under the SMTP policy (CRLF line
ends) with 7-bit transfer encodings, so the message passes any relay. The
headers of the result are parsed back and compared with the ones we set: a
header that appeared from nowhere (an injection through some field) stops
the build instead of reaching Postfix.
"""

from __future__ import annotations

import datetime as dt
import uuid
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime

from .addresses import Mailbox, parse_mailbox
from .request_model import SendRequest

POLICY = policy.SMTP.clone(cte_type="7bit")


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


def _check_headers(data: bytes, expected: list[str]) -> None:
    parsed = BytesHeaderParser(policy=POLICY).parsebytes(data)
    found = [name.lower() for name in parsed]
    if found != expected or parsed.defects:
        raise BuildError("the built message has headers that were not set")
