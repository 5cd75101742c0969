"""Per-transaction state: the envelope, the headers as received, the body.

A :class:`Transaction` starts at MAIL FROM and ends at end-of-message or
abort. The body streams into a buffer that stays in memory up to a
threshold and spills to a temporary file beyond it. The size limit is
checked on every header and chunk: a message that passes it is not stored
any further (the body held is freed at once) and is refused at end of message.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Protocol

from postwarden_policies import Envelope
from postwarden_policies.domains import normal_address

CRLF = b"\r\n"
SPILL_BATCH = 256 * 1024
# Of the headers of a transaction ended before its verdict (refused as too big,
# aborted), what is parsed for its audit row's From, Subject and Message-ID.
AUDIT_HEADER_BYTES = 64 * 1024
# Their first lines are kept for that row wherever they come (bounded as above).
_AUDITED = frozenset({"from", "subject", "message-id"})
# Recipients refused at RCPT that a transaction's audit row names; past these, only
# counted (a client may send thousands of RCPT TO).
REFUSED_KEPT = 100


def strip_brackets(address: str) -> str:
    """``<user@example.org>`` -> ``user@example.org``; ``<>`` -> ``""``."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


def esmtp_param(params: tuple[str, ...], wanted: str) -> str | None:
    """The value of the ESMTP parameter ``wanted`` (upper case), when the client gave it."""
    for param in params:
        name, _, value = param.partition("=")
        if name.upper() == wanted:
            return value
    return None


def esmtp_size(params: tuple[str, ...]) -> int | None:
    """The SIZE= value of MAIL FROM, when the client declared one (ASCII digits: ``²``
    is a digit to str.isdigit, and no number to int)."""
    value = esmtp_param(params, "SIZE")
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


RecipientKey = tuple[bytes, frozenset[str], bytes]


def recipient_key(address: str, params: tuple[str, ...], smtputf8: bool) -> RecipientKey:
    """What Postfix's cleanup compares to drop a repeated recipient (duplicate_filter_limit,
    with enable_original_recipient at its default): the DSN original recipient, the
    NOTIFY flags and the address, all without regard to case. With smtputf8_enable
    (its default since compatibility level 1, Debian's too) Postfix folds case as
    Unicode does in full (ICU's u_strFoldCase, as str.casefold: ``BØB`` is ``bøb``,
    ``STRASSE`` is ``straße``, the Kelvin sign is ``k``), else ASCII letters only.
    Folded in full here only for a transaction whose MAIL FROM said SMTPUTF8, which
    Postfix takes only with smtputf8_enable, or whose {smtputf8_enable} macro says yes
    (handler); otherwise ASCII only, so that at worst a recipient counts twice here,
    never once where Postfix keeps two. Without ORCPT,
    smtpd makes one up from the address as given, so ``"bob"@x`` and ``bob@x`` stay
    two. ORCPT's xtext and, when ORCPT is given, the address's quoting are compared as
    sent where Postfix decodes them: such a recipient counts twice here. Every recipient
    is remembered, as Postfix's filter does with duplicate_filter_limit = 0 (no limit), and
    with its default 1000 under smtpd_recipient_limit's 1000; one set below the recipients
    of a message keeps repeats of those past it, which count once here."""
    orcpt = esmtp_param(params, "ORCPT")
    notify = esmtp_param(params, "NOTIFY")
    folded = fold_case(address, smtputf8)
    return (
        b"rfc822;" + folded if orcpt is None else fold_case(orcpt, smtputf8),
        frozenset(notify.upper().split(",")) if notify else frozenset(),
        folded,
    )


def fold_case(text: str, unicode: bool) -> bytes:
    """``text`` without regard to case as Postfix compares addresses (see recipient_key):
    as Unicode folds it with ``unicode`` (Transaction.smtputf8), else ASCII letters only:
    ``JÖRG`` and ``jörg`` are then two mailboxes."""
    if unicode and not text.isascii():
        return text.casefold().encode("utf-8", "surrogateescape")
    return text.encode("utf-8", "surrogateescape").lower()  # bytes.lower: ASCII only


@dataclass
class Client:
    """What the connection told us before any transaction."""

    address: str | None = None
    name: str | None = None
    helo: str | None = None
    # Mail submitted with sendmail(1) (non_smtpd_milters): no SMTP client, a connection
    # Postfix's cleanup makes up, on which it cannot refuse a recipient alone.
    local: bool = False


def _field_start(held: bytearray) -> int:
    """Where the last header field that starts within AUDIT_HEADER_BYTES starts (a line
    end followed by a space or tab only folds the field before it); 0 for none."""
    end = held.rfind(CRLF, 0, AUDIT_HEADER_BYTES - 1)
    while end >= 0 and bytes(held[end + 2 : end + 3]) in (b" ", b"\t"):
        end = held.rfind(CRLF, 0, end)
    return end + len(CRLF) if end >= 0 else 0


class BodyBuffer:
    """The body's chunks as libmilter delivered them; past ``threshold`` bytes, a file.

    In memory the chunks are kept as they are and joined once, with the
    headers, into the message (one copy, where a BytesIO would make three).
    Once spilled, chunks still gather in memory and go to the file in batches
    of ``batch`` bytes: one write per batch instead of one per 64 KB chunk
    (each write gives up the GIL, and 16 filter threads wait on it).
    """

    def __init__(self, threshold: int, batch: int = SPILL_BATCH) -> None:
        self._threshold = threshold
        self._batch = batch
        self._chunks: list[bytes] = []
        self._held = 0
        self._file: IO[bytes] | None = None

    @property
    def spilled(self) -> bool:
        return self._file is not None

    @property
    def in_memory(self) -> int:
        """Body bytes held in memory: at most ``threshold``, then at most ``batch``."""
        return self._held

    def write(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._held += len(chunk)
        if self._held > (self._threshold if self._file is None else self._batch):
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # closed by close()
            self._file.write(b"".join(self._chunks))
            self._chunks = []
            self._held = 0

    def after(self, head: bytes) -> bytes:
        """``head`` followed by the body."""
        if self._file is None:
            return b"".join([head, *self._chunks])
        self._file.seek(0)
        return b"".join([head, self._file.read(), *self._chunks])

    def close(self) -> None:
        self._chunks = []
        self._held = 0
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class Transaction:
    sender: str
    auth_user: str | None
    memory_threshold: int
    max_bytes: int | None
    max_recipients: int | None = None
    # The set the limits come from (its MAIL FROM's): a size refusal's row names it, though a
    # reload since put another in force.
    limits_hash: str | None = None
    # The set end of message decides in: the row of a decision that fails (its deadline,
    # an error, a stop's) names it, though a reload since put another in force.
    deciding_hash: str | None = None
    # Postfix folds its addresses as Unicode does: MAIL FROM said SMTPUTF8, or the
    # {smtputf8_enable} macro says so (handler; see recipient_key)
    smtputf8: bool = False
    # A local submission's tempfailed pass, once counted (localretries): 0, or past
    # local_retry_passes how many were, to hold it. None: not counted (yet).
    counted_pass: int | None = None
    origin: str | None = None  # the domain Postfix gives an address without one (Envelope)
    queue_id: str | None = None
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.monotonic)
    recipients: list[str] = field(default_factory=list)
    _recipient_keys: set[RecipientKey] = field(default_factory=set)
    # Recipients refused at RCPT, for the audit row: the first REFUSED_KEPT as given,
    # each with its reply, and how many more were refused.
    refused: list[tuple[str, str]] = field(default_factory=list)
    refused_more: int = 0
    # Its content slot (Slots): None until its first header or body chunk, then whether
    # it got one (without, nothing of the content is kept).
    slot: bool | None = None
    header_bytes: bytearray = field(default_factory=bytearray)
    header_names: Counter[str] = field(default_factory=Counter)
    size: int = 0  # of the message so far, as raw_message() gives it (0: nothing yet)
    # The first From, Subject and Message-ID lines: where header_bytes holds each (None:
    # past the size limit, not kept), and the line.
    _audited: dict[str, tuple[int | None, bytes]] = field(default_factory=dict)
    _body: BodyBuffer | None = None

    def add_recipient(self, as_given: str, params: tuple[str, ...], limit: int | None) -> bool:
        """Keep a new recipient; False (nothing kept) when it would be one past ``limit``.

        ``recipients`` holds what Postfix's cleanup keeps: one repeated the way its
        duplicate filter drops is no further recipient (only the first spelling given
        stays), so a client repeating RCPT TO is not refused before ``limit`` of them.
        """
        address = strip_brackets(as_given)
        key = recipient_key(address, params, self.smtputf8)
        if key in self._recipient_keys:
            return True
        if limit is not None and len(self.recipients) >= limit:
            return False
        self._recipient_keys.add(key)
        self.recipients.append(address)
        return True

    def learn_origin(self, as_given: str, rewritten: Callable[[], str | None]) -> None:
        """Learn the domain Postfix appends to an address without one (its myorigin)
        from ``as_given``, such an address, and its ``rewritten`` form (the macro
        {mail_addr} or {rcpt_addr}, only asked for then): the milter is given addresses
        as written, and a rule on dave@example.com must hold for MAIL FROM:<dave>."""
        if self.origin is not None:
            return
        address = normal_address(strip_brackets(as_given))
        if address and "@" not in address:
            _, at, domain = (rewritten() or "").rpartition("@")
            self.origin = domain if at and domain else None

    def refuse_recipient(self, as_given: str, reply: str) -> None:
        """Remember a recipient refused with ``reply`` (bounded: REFUSED_KEPT)."""
        if len(self.refused) < REFUSED_KEPT:
            self.refused.append((strip_brackets(as_given), reply))
        else:
            self.refused_more += 1

    def add_header(self, name: str, value: bytes, leading_space: bool) -> bool:
        """Keep the header as received; False once the message is too big."""
        # libmilter hands folded values with bare LF; the message on the wire uses CRLF.
        value = value.replace(CRLF, b"\n").replace(b"\n", CRLF)
        line = name.encode("utf-8", "surrogateescape") + (b":" if leading_space else b": ")
        line += value + CRLF
        lower = name.lower()
        self.header_names[lower] += 1
        kept = self._grow(len(line))  # past the limit: refused at end of message, not kept
        if lower in _AUDITED and lower not in self._audited:
            short = line if len(line) <= AUDIT_HEADER_BYTES else line[:AUDIT_HEADER_BYTES] + CRLF
            self._audited[lower] = (len(self.header_bytes) if kept else None, short)
        if kept:
            self.header_bytes += line
        return kept

    def _grow(self, count: int) -> bool:
        """Count ``count`` more bytes (with the first, the blank line that ends the
        headers, which a message has with or without a body); whether it still fits."""
        if not self.size:
            count += len(CRLF)
        self.size += count
        return self.within_limit

    def leading_headers(self) -> bytes:
        """What a transaction ended before its verdict parses for its audit row: the
        whole header fields held within :data:`AUDIT_HEADER_BYTES`, and the first From,
        Subject and Message-ID lines that came later (or were not kept)."""
        held = self.header_bytes
        cut = len(held) if len(held) <= AUDIT_HEADER_BYTES else _field_start(held)
        later = [line for at, line in self._audited.values() if at is None or at >= cut]
        return bytes(held[:cut]) + b"".join(later)

    def add_body(self, chunk: bytes) -> bool:
        """Keep the chunk; past the size limit keep nothing, only count (False)."""
        if self._body is None:
            self._body = BodyBuffer(self.memory_threshold)
        if not self._grow(len(chunk)):
            self._body.close()
            return False
        self._body.write(chunk)
        return True

    @property
    def spilled(self) -> bool:
        """Whether the body went to a temporary file (past ``memory_threshold``)."""
        return self._body is not None and self._body.spilled

    @property
    def within_limit(self) -> bool:
        return self.fits(self.size)

    def fits(self, size: int) -> bool:
        return self.max_bytes is None or size <= self.max_bytes

    def raw_message(self) -> bytes:
        """Headers as received, the blank line, the body as received."""
        head = bytes(self.header_bytes) + CRLF
        return head if self._body is None else self._body.after(head)

    def envelope(self, client: Client, *, recipients: bool = True) -> Envelope:
        """The transaction's envelope; ``recipients=False``: as known at MAIL FROM (what
        a ``limits: when:`` reads), without copying the recipients at every RCPT."""
        return Envelope(
            sender=self.sender,
            recipients=tuple(self.recipients) if recipients else (),
            client_ip=client.address,
            client_name=client.name,
            helo=client.helo,
            auth_user=self.auth_user,
            queue_id=self.queue_id,
            origin=self.origin,
        )

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None


class Slots:
    """Transactions whose content the milter holds, counted up to ``max_concurrency``:
    past it a new MAIL FROM gets a cheap 421, and content that comes all the same (its
    MAIL FROM came in time) is not kept and gets 451 at end of message. A transaction
    takes one with its first header or body chunk (handler.ConnectionHandler), which
    Postfix sends only once the client ended DATA: not connections, which Postfix holds
    for the whole SMTP session, nor transactions still in their envelope, which a slow
    client can keep open for minutes; both hold no body and need no evaluation, and
    counted, a few dozen of them locked all mail out."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._active = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        return self._active

    @property
    def full(self) -> bool:
        return self._active >= self._limit

    def acquire(self) -> bool:
        """Count one more; False past the limit."""
        with self._lock:
            if self._active >= self._limit:
                return False
            self._active += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._active -= 1


class InFlight:
    """Our callbacks running now, on libmilter's threads (counted by libmilter.py's
    wrappers): a callback may still be on its way to the reply a stop must let through,
    after its transaction already counts as ended."""

    def __init__(self) -> None:
        self._active = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        return self._active

    # enter()/leave() rather than a context manager: every callback pays for them, and
    # a generator-based one costs three times as much.
    def enter(self) -> None:
        with self._lock:
            self._active += 1

    def leave(self) -> None:
        with self._lock:
            self._active -= 1


class _Counted(Protocol):
    """How many are open (services.OpenTransactions)."""

    @property
    def active(self) -> int: ...


class Settling:
    """Whether a stop may hang the connections up, asked once per tick of its loop.

    Only once no transaction is open and no callback runs, found so at two ticks in a
    row: libmilter writes a callback's reply after the callback returns, and a
    transaction counts as ended inside the callback that ends it. Hung up before its
    reply is written, the message is tempfailed by the MTA although its audit row says
    accepted and the duplicate table holds it. A tick found quiet saw every
    transaction-ending callback already returned (none can start afterwards: a stop
    admits no transaction), so the next tick leaves libmilter a tick to write it.
    """

    def __init__(self, transactions: _Counted, callbacks: InFlight) -> None:
        self._transactions = transactions
        self._callbacks = callbacks
        self._was_quiet = False

    def settled(self) -> bool:
        # Transactions first: one ended since is by a callback counted as running.
        quiet = not self._transactions.active and not self._callbacks.active
        settled, self._was_quiet = quiet and self._was_quiet, quiet
        return settled
