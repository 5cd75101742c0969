"""Per-transaction state: the envelope, the headers as received, the body.

A :class:`Transaction` starts at MAIL FROM and ends at end-of-message or
abort. The body streams into a buffer that stays in memory up to a
threshold and spills to a temporary file beyond it; the size limit is
checked on every chunk, so an oversized message is refused while it is still
arriving, not after it was stored.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import IO

from postwarden_policies import Envelope

CRLF = b"\r\n"


def strip_brackets(address: str) -> str:
    """``<user@example.org>`` -> ``user@example.org``; ``<>`` -> ``""``."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


def esmtp_size(params: tuple[str, ...]) -> int | None:
    """The SIZE= value of MAIL FROM, when the client declared one."""
    for param in params:
        name, _, value = param.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


@dataclass
class Client:
    """What the connection told us before any transaction."""

    address: str | None = None
    name: str | None = None
    helo: str | None = None


class BodyBuffer:
    """The body's chunks as libmilter delivered them; past ``threshold`` bytes, a file.

    In memory the chunks are kept as they are and joined once, with the
    headers, into the message (one copy, where a BytesIO would make three).
    """

    def __init__(self, threshold: int) -> None:
        self._threshold = threshold
        self._chunks: list[bytes] = []
        self._held = 0
        self._file: IO[bytes] | None = None

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def write(self, chunk: bytes) -> None:
        if self._file is not None:
            self._file.write(chunk)
            return
        self._chunks.append(chunk)
        self._held += len(chunk)
        if self._held > self._threshold:
            self._file = tempfile.TemporaryFile()  # closed by close()
            self._file.writelines(self._chunks)
            self._chunks = []

    def after(self, head: bytes) -> bytes:
        """``head`` followed by the body."""
        if self._file is None:
            return b"".join([head, *self._chunks])
        self._file.seek(0)
        return head + self._file.read()

    def close(self) -> None:
        self._chunks = []
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class Transaction:
    sender: str
    auth_user: str | None
    memory_threshold: int
    max_bytes: int | None
    queue_id: str | None = None
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.monotonic)
    recipients: list[str] = field(default_factory=list)
    rcpt_as_given: dict[str, str] = field(default_factory=dict)  # for delrcpt
    header_bytes: bytearray = field(default_factory=bytearray)
    header_names: Counter[str] = field(default_factory=Counter)
    size: int = 0
    _body: BodyBuffer | None = None

    def add_recipient(self, as_given: str) -> None:
        address = strip_brackets(as_given)
        self.recipients.append(address)
        self.rcpt_as_given.setdefault(address.lower(), as_given)

    def add_header(self, name: str, value: bytes, leading_space: bool) -> bool:
        """Keep the header as received; False once the message is too big."""
        # libmilter hands folded values with bare LF; the message on the wire uses CRLF.
        value = value.replace(CRLF, b"\n").replace(b"\n", CRLF)
        line = name.encode("utf-8", "surrogateescape") + (b":" if leading_space else b": ")
        line += value + CRLF
        self.header_bytes += line
        self.header_names[name.lower()] += 1
        self.size += len(line)
        return self.within_limit

    def add_body(self, chunk: bytes) -> bool:
        if self._body is None:
            self._body = BodyBuffer(self.memory_threshold)
            self.size += len(CRLF)
        self._body.write(chunk)
        self.size += len(chunk)
        return self.within_limit

    @property
    def within_limit(self) -> bool:
        return self.fits(self.size)

    def fits(self, size: int) -> bool:
        return self.max_bytes is None or size <= self.max_bytes

    def raw_message(self) -> bytes:
        """Headers as received, the blank line, the body as received."""
        head = bytes(self.header_bytes) + CRLF
        return head if self._body is None else self._body.after(head)

    def envelope(self, client: Client) -> Envelope:
        return Envelope(
            sender=self.sender,
            recipients=tuple(self.recipients),
            client_ip=client.address,
            client_name=client.name,
            helo=client.helo,
            auth_user=self.auth_user,
            queue_id=self.queue_id,
        )

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
