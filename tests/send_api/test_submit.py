"""The relay's asyncio SMTP client against real servers on loopback.

aiosmtpd plays a well-behaved server (tests.fixtures.scripted_smtp); small
asyncio servers play broken ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest

from postwarden_admin_api.runtime_settings import DEFAULTS
from postwarden_admin_api.send.submit import Outcome, SmtpSession, data_block
from tests.fixtures.scripted_smtp import Scripted, hang_up_after_data, read_to_data

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def broken_server() -> AsyncIterator[Callable[[Answer], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> int:
        async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await answer(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(closing, "127.0.0.1", 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def session(port: int, timeout: float = 5.0) -> SmtpSession:
    return SmtpSession("127.0.0.1", port, timeout, "relay.test")


@contextlib.asynccontextmanager
async def connected(port: int, reply_timeout: float = 5.0) -> AsyncIterator[SmtpSession]:
    """A session that is closed (QUIT, hang up) however the test body ends."""
    smtp = session(port, reply_timeout)
    try:
        yield smtp
    finally:
        await smtp.close()


@pytest.mark.parametrize(
    ("content", "block"),
    [
        (b".a\r\n.\r\nb.\r\n..c", b"..a\r\n..\r\nb.\r\n...c\r\n.\r\n"),  # CRLF only
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"", b"\r\n.\r\n"),
        (b".a\n.b\r.c", b"..a\r\n..b\r\n..c\r\n.\r\n"),  # bare line ends
    ],
)
def test_data_block_is_the_same_on_both_paths(content: bytes, block: bytes) -> None:
    assert data_block(content) == block


def test_data_block_doubles_leading_dots_and_ends_the_data() -> None:
    content = b"Subject: x\r\n\r\n.hidden\r\n.\r\nmiddle. line\nbare lf\rbare cr"
    assert data_block(content) == (
        b"Subject: x\r\n\r\n..hidden\r\n..\r\nmiddle. line\r\nbare lf\r\nbare cr\r\n.\r\n"
    )


async def test_lines_starting_with_a_dot_arrive_intact(smtp_server: tuple[Scripted, int]) -> None:
    handler, port = smtp_server
    content = b"Subject: dots\r\n\r\n.first\r\n.\r\n..two\r\nlast\r\n"
    async with connected(port) as smtp:
        result = await smtp.submit("app@example.com", ["a@example.org"], content)
        again = await smtp.submit("app@example.com", ["b@example.org"], content)
    assert (result.outcome, result.queue_id, again.queue_id) == (Outcome.QUEUED, "Q1X", "Q2X")
    assert [received[2] for received in handler.received] == [content, content]


async def test_a_refused_transaction_is_reset_and_the_session_reused(
    smtp_server: tuple[Scripted, int],
) -> None:
    handler, port = smtp_server
    handler.rcpt_replies["gone@example.org"] = "550 5.1.1 no such user"
    async with connected(port) as smtp:
        refused = await smtp.submit("app@example.com", ["gone@example.org"], b"\r\nbody\r\n")
        deferred = await smtp.submit("app@example.com", ["a@example.org"], b"\r\nbody\r\n")
    assert (refused.outcome, refused.reply) == (Outcome.FAILED, "550 5.1.1 no such user")
    assert refused.refused == {"gone@example.org": "550 5.1.1 no such user"}
    assert deferred.outcome is Outcome.QUEUED


async def test_a_server_that_does_not_speak_smtp_is_unreachable(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()

    port = await broken_server(answer)
    result = await session(port).submit("app@example.com", ["a@example.org"], b"\r\nx\r\n")
    assert (result.outcome, result.reply) == (Outcome.UNREACHABLE, "no session: ProtocolError")


async def test_a_server_that_goes_silent_times_out_to_retry(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-relay.test first line\r\n220 ready\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250-relay.test\r\n250 PIPELINING\r\n")
        await reader.readline()  # MAIL FROM, never answered
        await reader.read()

    port = await broken_server(answer)
    result = await session(port, timeout=0.5).submit(
        "app@example.com", ["a@example.org"], b"\r\nx\r\n"
    )
    assert (result.outcome, result.reply) == (Outcome.RETRY, "connection failed: TimeoutError")
    assert not result.uncertain  # the message never went out


async def test_no_answer_after_the_message_went_out_is_an_uncertain_retry(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    """Postfix may have queued it: the relay must ask its log before sending again."""
    port = await broken_server(hang_up_after_data)
    result = await session(port).submit("app@example.com", ["a@example.org"], b"\r\nx\r\n")
    assert (result.outcome, result.uncertain) == (Outcome.RETRY, True)
    assert result.reply == "no answer to the message sent: ProtocolError"


async def test_an_endless_reply_is_refused(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-more\r\n" * 500)
        await writer.drain()
        await reader.read()

    port = await broken_server(answer)
    result = await session(port).submit("app@example.com", ["a@example.org"], b"\r\nx\r\n")
    assert (result.outcome, result.reply) == (Outcome.UNREACHABLE, "no session: ProtocolError")


async def test_a_command_cannot_carry_a_line_break(smtp_server: tuple[Scripted, int]) -> None:
    handler, port = smtp_server
    async with connected(port) as smtp:
        result = await smtp.submit(
            "app@example.com", ["a@example.org>\r\nRCPT TO:<b@example.org"], b"\r\nx\r\n"
        )
    assert (result.outcome, result.reply) == (Outcome.RETRY, "connection failed: ValueError")
    assert handler.received == []


class PipeliningServer:
    """Offers PIPELINING and answers MAIL only once DATA has been read too, so a
    client that waits for each reply hangs: passing proves the commands went together."""

    def __init__(self, rcpt_replies: dict[str, bytes]) -> None:
        self.rcpt_replies = rcpt_replies
        self.connections = 0
        self.messages: list[bytes] = []
        self.commands: list[str] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 relay.test ESMTP\r\n")
        while line := await reader.readline():
            command = line.decode().strip()
            self.commands.append(command.split(":")[0])
            if command.startswith("EHLO"):
                writer.write(b"250-relay.test\r\n250 PIPELINING\r\n")
            elif command.startswith("MAIL"):
                await self._transaction(reader, writer)
            elif command in ("RSET", "NOOP"):
                writer.write(b"250 2.0.0 Ok\r\n")
            elif command == "QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                return

    async def _transaction(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        replies = [b"250 2.1.0 Ok\r\n"]
        accepted = 0
        while (line := (await reader.readline()).decode().strip()).startswith("RCPT"):
            reply = self.rcpt_replies.get(line.split("<")[1].rstrip(">"), b"250 2.1.5 Ok")
            accepted += reply.startswith(b"250")
            replies.append(reply + b"\r\n")
        assert line == "DATA"
        if not accepted:
            writer.write(b"".join(replies) + b"554 5.5.1 Error: no valid recipients\r\n")
            return
        writer.write(b"".join(replies) + b"354 End data with <CR><LF>.<CR><LF>\r\n")
        message = b""
        while (line_bytes := await reader.readline()) not in (b".\r\n", b""):
            message += line_bytes
        if line_bytes:
            self.messages.append(message)
            writer.write(f"250 2.0.0 Ok: queued as P{len(self.messages)}X\r\n".encode())


async def test_pipelined_submission_with_a_refused_recipient(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    server = PipeliningServer({"gone@example.org": b"550 5.1.1 no such user"})
    async with connected(await broken_server(server), reply_timeout=2.0) as smtp:
        result = await smtp.submit(
            "app@example.com", ["gone@example.org", "a@example.org"], b"\r\n.dot\r\n"
        )
    assert (result.outcome, result.queue_id) == (Outcome.QUEUED, "P1X")
    assert result.refused == {"gone@example.org": "550 5.1.1 no such user"}
    assert server.messages == [b"\r\n..dot\r\n"]


async def test_pipelined_deferred_recipient_keeps_the_refusals_after_it(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    server = PipeliningServer({"later@example.org": b"452 4.5.3 try later",
                               "gone@example.org": b"550 5.1.1 no such user"})
    async with connected(await broken_server(server), reply_timeout=2.0) as smtp:
        result = await smtp.submit(
            "app@example.com", ["later@example.org", "gone@example.org"], b"\r\nx\r\n"
        )
    assert (result.outcome, result.reply) == (Outcome.RETRY, "452 4.5.3 try later")
    assert result.refused == {"gone@example.org": "550 5.1.1 no such user"}


async def test_pipelined_all_refused_fails_and_resets(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    server = PipeliningServer({"gone@example.org": b"550 5.1.1 no such user"})
    async with connected(await broken_server(server), reply_timeout=2.0) as smtp:
        failed = await smtp.submit("app@example.com", ["gone@example.org"], b"\r\nx\r\n")
        queued = await smtp.submit("app@example.com", ["a@example.org"], b"\r\nx\r\n")
    assert (failed.outcome, failed.reply) == (Outcome.FAILED, "550 5.1.1 no such user")
    assert queued.outcome is Outcome.QUEUED
    assert server.connections == 1 and "RSET" in server.commands


async def test_pipelined_deferred_recipient_hangs_up_in_data(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    """DATA already had its 354: the message is not sent, the connection is dropped."""
    server = PipeliningServer({"later@example.org": b"450 4.2.0 mailbox busy"})
    async with connected(await broken_server(server), reply_timeout=2.0) as smtp:
        deferred = await smtp.submit(
            "app@example.com", ["a@example.org", "later@example.org"], b"\r\nx\r\n"
        )
        queued = await smtp.submit("app@example.com", ["a@example.org"], b"\r\ny\r\n")
    assert (deferred.outcome, deferred.reply) == (Outcome.RETRY, "450 4.2.0 mailbox busy")
    assert queued.outcome is Outcome.QUEUED
    assert server.messages == [b"\r\ny\r\n"]  # the deferred one never reached the server
    assert server.connections == 2


@pytest.mark.parametrize("at", [0, 1])  # MAIL FROM, the recipient
async def test_a_pipelined_421_and_hang_up_is_retried_with_the_421(
    broken_server: Callable[[Answer], Awaitable[int]], at: int,
) -> None:
    """Postfix answers a milter's 421 (postwarden's own when overloaded, at MAIL FROM)
    and closes the connection (RFC 5321 3.8): no reply follows to the commands
    pipelined after it. The 421 is the answer stored and logged."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_to_data(reader, writer)
        writer.write(b"250 2.1.0 Ok\r\n" * at + b"421 4.3.2 Service currently unavailable\r\n")
        await writer.drain()

    port = await broken_server(answer)
    async with connected(port) as smtp:
        result = await smtp.submit("app@example.com", ["a@example.org"], b"\r\nx\r\n")
    assert (result.outcome, result.reply, result.uncertain) == (
        Outcome.RETRY, "421 4.3.2 Service currently unavailable", False)


async def silent_after_ehlo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greets and answers EHLO, then never answers again."""
    writer.write(b"220 ready\r\n")
    await reader.readline()  # EHLO
    writer.write(b"250 relay.test\r\n")
    await reader.read()


async def cancel_while_waiting(work: Coroutine[Any, Any, Any]) -> None:
    task = asyncio.create_task(work)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_close_cancelled_while_waiting_for_quit_still_hangs_up(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    smtp = session(await broken_server(silent_after_ehlo))
    connection = await smtp._connection()
    await cancel_while_waiting(smtp.close())  # QUIT is never answered
    assert connection._writer.is_closing()


async def test_a_submission_cancelled_mid_transaction_is_never_reused(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    smtp = session(await broken_server(silent_after_ehlo))
    connection = await smtp._connection()
    # MAIL is never answered.
    await cancel_while_waiting(smtp.submit("app@example.com", ["a@example.org"], b"x"))
    assert connection._writer.is_closing()  # half a transaction: the next one starts afresh
    assert smtp._conn is None


async def test_a_submission_cut_off_mid_data_sends_not_a_byte_more(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    """Cut off (its bound passed) while the server reads the message slowly: the rest of
    the message, its final dot included, is not sent after it; the server would have
    queued a message its sender took for cut off, and maybe sent again."""
    cut, read, received = asyncio.Event(), asyncio.Event(), bytearray()

    async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_to_data(reader, writer)
        writer.write(b"250 ok\r\n250 ok\r\n354 go on\r\n")
        await cut.wait()  # the socket buffers fill meanwhile
        received.extend(await reader.read())
        read.set()

    smtp = session(await broken_server(slow_reader))
    content = b"x" * 998 + b"\r\n"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            await smtp.submit("app@example.com", ["a@example.org"], content * 32 * 1024)
    cut.set()
    async with asyncio.timeout(15):  # to the connection's end
        await read.wait()
    assert received and not received.endswith(b"\r\n.\r\n")


async def test_a_slow_reply_to_the_end_of_data_is_awaited_not_retried(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    """The 250 after the final "." comes once the message is queued (milters included):
    a client that gave up at its command timeout would send the message again."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250 relay.test\r\n")
        for reply in (b"250 2.1.0 Ok", b"250 2.1.5 Ok", b"354 go ahead"):
            await reader.readline()  # MAIL, RCPT, DATA
            writer.write(reply + b"\r\n")
        while await reader.readline() not in (b".\r\n", b""):
            pass
        await asyncio.sleep(1.0)  # twice the client's command timeout
        writer.write(b"250 2.0.0 Ok: queued as SLOW1\r\n")
        await reader.read()

    async with connected(await broken_server(answer), reply_timeout=0.5) as smtp:
        result = await smtp.submit("app@example.com", ["a@example.org"], b"Subject: x\r\n\r\nx")
    assert (result.outcome, result.queue_id) == (Outcome.QUEUED, "SLOW1")


class SizeLimitServer:
    """Offers SIZE (or not) and refuses a MAIL that declares more, as Postfix does; a
    message that gets past MAIL is read whole and then refused (552 after DATA)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit  # None: SIZE is not offered
        self.commands: list[str] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 relay.test ESMTP\r\n")
        while line := await reader.readline():
            command = line.decode().strip()
            self.commands.append(command)
            if command.startswith("EHLO"):
                offer = b"" if self.limit is None else f"250-SIZE {self.limit}\r\n".encode()
                writer.write(b"250-relay.test\r\n" + offer + b"250 8BITMIME\r\n")
            elif command.startswith("MAIL"):
                size = command.partition(" SIZE=")[2]
                too_large = self.limit is not None and size != "" and int(size) > self.limit
                writer.write(b"552 5.3.4 Message size exceeds fixed limit\r\n" if too_large
                             else b"250 2.1.0 Ok\r\n")
            elif command == "DATA":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                while await reader.readline() not in (b".\r\n", b""):
                    pass
                writer.write(b"552 5.3.4 Message size exceeds fixed limit\r\n")
            elif command == "QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                return
            else:  # RCPT, RSET
                writer.write(b"250 2.0.0 Ok\r\n")


async def test_mail_declares_the_size_so_a_message_too_large_is_refused_before_data(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    server = SizeLimitServer(limit=100)
    content = b"Subject: big\r\n\r\n" + b"x" * 200 + b"\r\n"
    async with connected(await broken_server(server), reply_timeout=2.0) as smtp:
        result = await smtp.submit("app@example.com", ["a@example.org"], content)
    assert (result.outcome, result.reply) == (
        Outcome.FAILED, "552 5.3.4 Message size exceeds fixed limit")
    assert f"MAIL FROM:<app@example.com> SIZE={len(content)}" in server.commands
    assert "DATA" not in server.commands  # nothing of the message went out


async def test_mail_declares_no_size_to_a_server_that_does_not_offer_size(
    broken_server: Callable[[Answer], Awaitable[int]],
) -> None:
    server = SizeLimitServer(limit=None)
    async with connected(await broken_server(server), reply_timeout=2.0) as smtp:
        await smtp.submit("app@example.com", ["a@example.org"], b"Subject: x\r\n\r\nx\r\n")
    assert "MAIL FROM:<app@example.com>" in server.commands


def test_the_default_message_size_limit_is_no_larger_than_postfix_default() -> None:
    """A message the API accepts by default must not then be refused by a Postfix
    left at its default message_size_limit (a 202, then a 552). Postfix is a test
    dependency (`make deps`): without postconf this fails, it does not skip."""
    assert shutil.which("postconf"), "postconf not found: install Postfix (make deps)"
    postfix_default = subprocess.run(
        ["postconf", "-d", "-h", "message_size_limit"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    assert DEFAULTS.max_message_bytes <= int(postfix_default)
