"""One SMTP transaction with the Postfix submission listener, on the event loop.

A small asyncio SMTP client (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) rather
than smtplib in threads: the relay's tasks then share the event loop with
the API instead of contending with it for the GIL.

A :class:`SmtpSession` keeps its connection between messages (``RSET``
after a refused transaction) and checks an idle one with ``NOOP`` before
reusing it. When the server offers PIPELINING (RFC 2920; Postfix does),
MAIL, every RCPT and DATA go out in one write and their replies are read
together: two round trips per message instead of three plus one per
recipient. The replies decide the same way in both modes (:func:`_settle`).
When it offers SIZE (RFC 1870; Postfix does), MAIL declares the message's
size: one over ``message_size_limit`` is refused at MAIL (552 5.3.4), not
once all of it went out. A busy session skips the NOOP: a connection the
server closed since its last transaction (Postfix stopped or restarted) fails
at the next one's first reply, before any of the message went out, and the
transaction is made again on a new connection (or the server is unreachable).

Every outcome is a value: ``QUEUED`` with Postfix's queue id,
``RETRY`` for 4xx replies and connections lost in a transaction (``uncertain``
when the message had gone out: Postfix may have queued it), ``UNREACHABLE``
when no session could be opened (the message never left), ``FAILED`` for 5xx
replies; recipients refused one by one with 5xx are listed apart.
"""

from __future__ import annotations

import asyncio
import enum
import re
import time
from dataclasses import dataclass, field

from postwarden_admin_api.bodies import is_large, run_sized

_QUEUE_ID = re.compile(r"queued as ([0-9A-Za-z]+)")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)
IDLE_CHECK_SECONDS = 2.0
MAX_REPLY_LINES = 100  # a multi-line reply longer than this is a broken server
MAX_LINE_BYTES = 8192
QUIT_SECONDS = 5.0  # closing never waits long on a server that stopped answering
# The reply to the final "." comes once the message is queued, milters included:
# giving up sooner would send it again (RFC 5321 4.5.3.2.6 asks for 10 minutes).
DATA_END_SECONDS = 600.0


class Outcome(enum.Enum):
    QUEUED = "queued"
    RETRY = "retry"
    UNREACHABLE = "unreachable"  # no session: no connection, no greeting, EHLO refused
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SubmitResult:
    outcome: Outcome
    reply: str  # the deciding reply ("250 2.0.0 Ok: queued as X") or what failed
    queue_id: str | None = None
    refused: dict[str, str] = field(default_factory=dict)  # recipient -> 5xx reply
    # RETRY after the whole message went out without an answer: Postfix may have queued it.
    uncertain: bool = False


# A connection used before failed at the first reply of a transaction: the server
# closed it since (stopped, restarted). Nothing of the message went out.
_CLOSED = SubmitResult(Outcome.RETRY, "connection closed by the server since its last use")


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str  # the lines' texts, joined by spaces

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.text.split())}"


class ProtocolError(Exception):
    """The server's answer is not SMTP."""


class _Unanswered(Exception):
    """The connection failed once the message was being sent (its cause chained)."""


def _by_code(reply: Reply, refused: dict[str, str] | None = None) -> SubmitResult:
    """``refused``: the recipients refused at RCPT, each of whose failure is its own
    reply, not this one (to DATA, or to another recipient's RCPT)."""
    outcome = Outcome.FAILED if 500 <= reply.code < 600 else Outcome.RETRY
    return SubmitResult(outcome, str(reply), refused=refused or {})


def data_block(content: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled, the final ``.``.

    It runs on the event loop, so the common case stays in C: messages we
    built already end their lines with CRLF, and then two ``replace`` calls
    do (a regex pass took over a second on a 25 MB message).
    """
    crlf = content.count(b"\r\n")
    if content.count(b"\n") == crlf == content.count(b"\r"):
        data = b"." + content if content.startswith(b".") else content
        data = data.replace(b"\r\n.", b"\r\n..")
    else:
        data = _LEADING_DOT.sub(b"..", _LINE_BREAK.sub(b"\r\n", content))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _settle(
    recipients: list[str], replies: list[Reply]
) -> tuple[SubmitResult | None, dict[str, str]]:
    """What the replies so far to MAIL, RCPT... and DATA decide, and the refused recipients.

    None: nothing decided yet (more replies to read), or DATA answered 354.
    """
    mail, rcpts = replies[0], replies[1 : 1 + len(recipients)]
    if mail.code != 250:
        return _by_code(mail), {}
    refused = {recipient: str(reply) for recipient, reply in zip(recipients, rcpts,
                                                                 strict=False)
               if 500 <= reply.code < 600}
    # One deferred recipient: all again later, those refused with their own replies
    # (the attempt may be the last).
    for reply in rcpts:
        if reply.code not in (250, 251) and not 500 <= reply.code < 600:
            return _by_code(reply, refused), refused
    if len(rcpts) < len(recipients):
        return None, refused
    if len(refused) == len(recipients):
        return SubmitResult(Outcome.FAILED, next(iter(refused.values())), refused=refused), refused
    data = replies[1 + len(recipients)] if len(replies) > 1 + len(recipients) else None
    if data is not None and data.code != 354:
        return _by_code(data, refused), refused
    return None, refused


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self.pipelining = False
        self.offers_size = False
        self.used = False  # a transaction was made on it (the server may have closed it since)
        self.replies = 0  # read whole so far

    def _send(self, lines: list[str]) -> None:
        """Addresses were validated, so the guard never fires; it stays on principle."""
        if any("\r" in line or "\n" in line or not line.isascii() for line in lines):
            raise ValueError("an SMTP command must be one line of ASCII")
        self._writer.write("".join(line + "\r\n" for line in lines).encode("ascii"))

    async def command(self, line: str) -> Reply:
        self._send([line])
        return await self.reply()

    async def pipeline(self, lines: list[str]) -> list[Reply]:
        """All the commands in one write, then their replies in order, up to a 421: the
        server closes the connection after it (RFC 5321 3.8; Postfix does, relaying a
        milter's), and no reply to the commands after it comes."""
        self._send(lines)
        replies: list[Reply] = []
        while len(replies) < len(lines) and (not replies or replies[-1].code != 421):
            replies.append(await self.reply())
        return replies

    async def data(self, block: bytes) -> Reply:
        """Send the message (see :func:`data_block`) after DATA's 354."""
        self._writer.write(block)
        async with asyncio.timeout(self._timeout):
            await self._writer.drain()
        async with asyncio.timeout(max(self._timeout, DATA_END_SECONDS)):
            return await self._read_reply()

    async def reply(self) -> Reply:
        # asyncio.timeout, not wait_for: no task created per line read.
        async with asyncio.timeout(self._timeout):
            return await self._read_reply()

    async def _read_reply(self) -> Reply:
        texts: list[str] = []
        for _ in range(MAX_REPLY_LINES):
            line = await self._reader.readline()
            if not line.endswith(b"\n") or len(line) > MAX_LINE_BYTES:
                raise ProtocolError("reply line cut short or too long")
            code, more, text = line[:3], line[3:4], line[4:].strip()
            if not code.isdigit():
                raise ProtocolError("reply without a code")
            texts.append(text.decode("utf-8", "replace"))
            if more != b"-":
                self.replies += 1
                return Reply(int(code), " ".join(texts))
        raise ProtocolError("reply with too many lines")

    def close(self) -> None:
        """Hang up at once: what is still buffered (the rest of a message cut off, its
        final dot) is dropped, not sent after the cut-off (close() would flush it)."""
        self._writer.transport.abort()


class SmtpSession:
    def __init__(self, host: str, port: int, timeout: float, helo: str) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout
        self._helo = helo
        self._conn: _Connection | None = None
        self._last_used = 0.0

    async def close(self) -> None:
        """QUIT politely; a connection that does not answer is just dropped."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await asyncio.wait_for(conn.command("QUIT"), QUIT_SECONDS)
        except (OSError, ProtocolError, TimeoutError):
            pass
        finally:  # cancelled while waiting for QUIT's answer too
            conn.close()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _connection(self) -> _Connection:
        if self._conn is not None and time.monotonic() - self._last_used > IDLE_CHECK_SECONDS:
            try:
                alive = (await self._conn.command("NOOP")).code == 250
            except (OSError, ProtocolError, TimeoutError):
                alive = False
            if not alive:
                self._drop()
        if self._conn is None:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port, limit=MAX_LINE_BYTES * 2),
                self._timeout,
            )
            conn = _Connection(reader, writer, self._timeout)
            try:
                greeting = await conn.reply()
                if greeting.code != 220:
                    raise ProtocolError(f"greeting {greeting}")
                hello = await conn.command(f"EHLO {self._helo}")
                if hello.code != 250:
                    raise ProtocolError(f"EHLO answered {hello}")
                extensions = hello.text.upper().split()
                conn.pipelining = "PIPELINING" in extensions
                conn.offers_size = "SIZE" in extensions
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        self._last_used = time.monotonic()
        return self._conn

    async def submit(self, sender: str, recipients: list[str], content: bytes) -> SubmitResult:
        result = await self._submit(sender, recipients, content)
        if result is _CLOSED:  # nothing went out: once more, on a new connection
            result = await self._submit(sender, recipients, content)
        return result

    async def _submit(self, sender: str, recipients: list[str], content: bytes
                      ) -> SubmitResult:
        try:
            conn = await self._connection()
        except (OSError, ProtocolError, TimeoutError, ValueError) as exc:
            self._drop()
            return SubmitResult(Outcome.UNREACHABLE, f"no session: {type(exc).__name__}")
        answered = conn.replies
        try:
            result, in_data = await self._transaction(conn, sender, recipients, content)
        except _Unanswered as unanswered:
            self._drop()
            cause = type(unanswered.__cause__).__name__
            return SubmitResult(Outcome.RETRY, f"no answer to the message sent: {cause}",
                                uncertain=True)
        except (OSError, ProtocolError, TimeoutError, ValueError) as exc:
            # ValueError: a reply line over the reader's limit, or a command not one ASCII line.
            self._drop()
            # Hung up (not silent: TimeoutError is an OSError too) before its first reply.
            if (conn.used and conn.replies == answered and not isinstance(exc, TimeoutError)
                    and isinstance(exc, OSError | ProtocolError)):
                return _CLOSED  # closed by the server since its last transaction
            return SubmitResult(Outcome.RETRY, f"connection failed: {type(exc).__name__}")
        except BaseException:  # cancelled, or a bug: the connection's state is unknown
            self._drop()
            raise
        conn.used = True
        if in_data:  # the server waits for a message we will not send: only hanging up ends it
            self._drop()
        elif result.outcome is not Outcome.QUEUED:
            await self._reset(conn)
        return result

    async def _reset(self, conn: _Connection) -> None:
        try:
            if (await conn.command("RSET")).code == 250:
                return
        except (OSError, ProtocolError, TimeoutError, ValueError):
            pass
        self._drop()

    @staticmethod
    async def _transaction(
        conn: _Connection, sender: str, recipients: list[str], content: bytes
    ) -> tuple[SubmitResult, bool]:
        """The outcome, and whether the server was left in DATA mode."""
        mail = f"MAIL FROM:<{sender}>" + (f" SIZE={len(content)}" if conn.offers_size else "")
        commands = [mail, *(f"RCPT TO:<{r}>" for r in recipients), "DATA"]
        if conn.pipelining:
            replies = await conn.pipeline(commands)
            settled, refused = _settle(recipients, replies)
        else:
            replies = []
            for command in commands:  # stop at the first reply that decides
                replies.append(await conn.command(command))
                settled, refused = _settle(recipients, replies)
                if settled is not None:
                    break
        in_data = replies[-1].code == 354 and len(replies) == len(commands)
        if settled is not None:
            return settled, in_data
        block = await run_sized(is_large(content), data_block, content)
        try:
            reply = await conn.data(block)
        except (OSError, ProtocolError, TimeoutError, ValueError) as exc:
            raise _Unanswered from exc
        if reply.code != 250:
            return _by_code(reply, refused), False
        match = _QUEUE_ID.search(str(reply))
        queued = SubmitResult(
            Outcome.QUEUED, str(reply), match.group(1) if match else None, refused
        )
        return queued, False
