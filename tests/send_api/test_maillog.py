"""The maillog follower: parsing Postfix delivery lines and applying them to recipients."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.periodic import DB_ERRORS, stop_task
from postwarden_admin_api.send import deliveryapply, maillog
from postwarden_admin_api.send.deliveryapply import our_queue_ids
from postwarden_admin_api.send.deliverylines import (
    DELETED_DETAIL,
    EXPIRED_DETAIL,
    REMOVED_DETAIL,
    DeliveryEvent,
    address_gone,
    parse_line,
)
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.outbox import enqueue
from postwarden_admin_api.send.relayoutcomes import Claimed, RelayConfig, record
from postwarden_admin_api.send.submit import Outcome, SubmitResult
from postwarden_admin_api.send.syslogline import LogLine, split_line
from postwarden_store import create_pool
from tests.conftest import PgServer
from tests.fixtures.postfix import SmtpResult, send_message
from tests.fixtures.submissions import ROOMY, submission
from tests.memory import peak_of


def delivery(line: str) -> DeliveryEvent | None:
    """What the follower reads in ``line``: Postfix's lines only, then delivery lines."""
    split = split_line(line)
    return parse_line(split) if split is not None else None


PREFIX = "Nov 23 15:12:49 mx postfix/smtp[4242]: 4Wq1Zk3sZnz9vBQ: "
SENT = PREFIX + (
    "to=<a@example.org>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.03, "
    "delays=0.01/0/0.01/0.01, dsn=2.0.0, status=sent (250 2.0.0 captured)"
)
BOUNCED = PREFIX + (
    "to=<b@example.org>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.02, delays=0/0/0/0, "
    "dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 no such user "
    "(in reply to RCPT TO command))"
)
DEFERRED = PREFIX + (
    "to=<c@example.org>, relay=none, delay=1, delays=0/0/1/0, dsn=4.4.1, "
    "status=deferred (connect to 127.0.0.1[127.0.0.1]:2525: Connection refused)"
)


@pytest.mark.parametrize(
    ("line", "recipient", "status", "dsn", "hard"),
    [
        pytest.param(SENT, "a@example.org", "delivered", "2.0.0", False, id="sent"),
        pytest.param(BOUNCED, "b@example.org", "bounced", "5.1.1", True, id="bounced"),
        pytest.param(DEFERRED, "c@example.org", "deferred", "4.4.1", False, id="deferred"),
    ],
)
def test_delivery_lines_are_parsed(
    line: str, recipient: str, status: str, dsn: str, hard: bool
) -> None:
    event = delivery(line)
    assert event is not None
    assert (event.queue_id, event.recipient, event.status, event.dsn, event.hard_bounce) == (
        "4Wq1Zk3sZnz9vBQ", recipient, status, dsn, hard
    )


def test_a_recipient_postfix_rewrote_is_known_by_the_address_we_gave() -> None:
    """virtual_alias_maps or canonical maps: Postfix logs the final address in to= and
    ours in orig_to=. One member of an alias bouncing does not suppress the alias."""
    event = delivery(PREFIX + "to=<bob@internal.example>, orig_to=<team@example.org>, "
                     "relay=x, delay=0, delays=0/0/0/0, dsn=5.1.1, status=bounced "
                     "(550 5.1.1 no such user)")
    assert event is not None
    assert (event.recipient, event.status, event.dsn, event.hard_bounce) == (
        "team@example.org", "bounced", "5.1.1", False)


@pytest.mark.parametrize(("dsn", "gone"), [
    ("5.1.1", True),    # bad destination mailbox
    ("5.1.2", True),    # bad destination system (no such domain)
    ("5.1.3", True),    # bad destination mailbox address syntax
    ("5.1.6", True),    # mailbox moved, no forwarding address
    ("5.1.10", True),   # null MX (RFC 7505)
    ("5.2.1", True),    # mailbox disabled
    ("5.1.7", False),   # the sender's mailbox address syntax
    ("5.1.8", False),   # the sender's system address
    ("5.2.2", False),   # mailbox full
    ("5.3.4", False),   # message too large
    ("5.4.6", False),   # routing loop
    ("5.7.1", False),   # refused by policy, as spam
    ("5.0.0", False),   # unspecified
    ("4.1.1", False),   # a temporary failure is never a bounce to suppress
    ("5.21.1", False),
    ("", False),        # a line about the whole message
])
def test_only_a_bounce_saying_the_address_is_bad_suppresses_it(dsn: str, gone: bool) -> None:
    """A refusal of one message (too large, spam, a full mailbox) says nothing of the
    next: suppressing the address for good would refuse every later send to it."""
    assert address_gone(dsn) is gone
    bounce = DeliveryEvent("4Wq1Zk3sZnz9vBQ", "a@example.org", "bounced", dsn, "550 no")
    assert bounce.hard_bounce is gone
    assert not dataclasses.replace(bounce, status="deferred").hard_bounce
    assert not dataclasses.replace(bounce, rewritten=True).hard_bounce


async def test_a_rewritten_recipient_is_tracked(pool: asyncpg.Pool, tmp_path: Path) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("ALIAS")
    message_id = await relayed_message(pool, queue_id, "Team@example.org")
    log_file.write_text(
        f"Nov 23 15:12:49 mx postfix/local[7]: {queue_id}: to=<bob@mx.example>, "
        "orig_to=<team@example.org>, relay=local, delay=0, delays=0/0/0/0, dsn=2.0.0, "
        "status=sent (delivered to mailbox)\n")
    await follower.poll()
    assert await message_status(pool, message_id) == "delivered"


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(PREFIX + "from=<app@example.com>, size=420, nrcpt=1 (queue active)",
                     id="qmgr"),
        pytest.param(PREFIX.replace("smtp[", "smtpd[") + "removed", id="removed-by-smtpd"),
        pytest.param(PREFIX.replace("smtp[", "qmgr[") + 'from=<"x>, status=expired, returned '
                     'to sender"@evil.example>, size=420, nrcpt=1 (queue active)',
                     id="expired-in-a-sender"),
        pytest.param("Nov 23 15:12:49 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from x: "
                     "554 5.7.1 <a@b.example>: Relay access denied; to=<a@b.example>", id="noq"),
        pytest.param("garbage", id="garbage"),
        # Text an outsider chose, in a line Postfix writes about their mail: an
        # envelope sender (a quoted local part), a Message-ID.
        pytest.param('Nov 23 15:12:49 mx postfix/qmgr[1]: 4XyZ: from=<"[1]: OURQ1: '
                     'to=<victim@corp.example>, dsn=5.1.1, status=bounced (x"@evil.example>, '
                     "size=420, nrcpt=1 (queue active)", id="forged-in-a-sender"),
        pytest.param("Nov 23 15:12:49 mx postfix/cleanup[3]: 4XyZ: message-id=[1]: OURQ1: "
                     "to=<victim@corp.example>, dsn=5.1.1, status=bounced (x)",
                     id="forged-in-a-message-id"),
    ],
)
def test_other_lines_are_ignored(line: str) -> None:
    assert delivery(line) is None


def test_a_line_is_only_ever_about_its_own_queue_id() -> None:
    # An outsider's recipient with a ">" in it: however it reads, it names their message.
    event = delivery('Nov 23 15:12:49 mx postfix/smtp[7]: 4XyZ: to=<"a>, x[1]: OURQ1: '
                       'to=<victim@corp.example>, dsn=5.1.1, status=bounced (x)"@b.example>, '
                       "relay=x, dsn=2.0.0, status=sent (250 ok)")
    assert event is not None and event.queue_id == "4XyZ"


def test_a_line_cut_short_takes_its_status_from_postfix_not_the_reply() -> None:
    event = delivery("Nov 23 15:12:49 mx postfix/smtp[7]: Q1: to=<v@corp.example>, relay=x, "
                       "dsn=4.2.0, status=deferred (host said: 450 mailbox busy status=bounced")
    assert event is not None and (event.status, event.dsn) == ("deferred", "4.2.0")
    assert event.reply == "host said: 450 mailbox busy status=bounced"




@pytest.mark.parametrize("rest", [
    pytest.param("to=<" + "a" * 1_000_000, id="address"),
    pytest.param('to=<"' + "a\\>" * 300_000, id="quoted-address"),
    pytest.param("to=<a@b>, " + "relay=x, " * 100_000, id="fields"),
])
def test_a_long_line_is_parsed_in_memory_of_its_size(rest: str) -> None:
    # Up to maillog.MAX_READ (4 MiB) is parsed as one line: sre kept a backtracking
    # point a character of the address or the fields, 150 MB for 1 MB, 700 MB for 4 MB.
    event, peak = peak_of(lambda: delivery(PREFIX + rest))
    assert event is None and peak < 4 * len(rest)


def test_the_status_is_the_first_one_postfix_wrote() -> None:
    event = delivery(PREFIX + "to=<a@b>, relay=x, status= (x), status=sent (250 ok)")
    assert event is None


WHOLE = "Nov 23 15:12:49 mx postfix/{program}[4242]: 4Wq1Zk3sZnz9vBQ: "
ENVELOPE = ("from localhost[127.0.0.1]; from=<app@example.com> to=<a@example.org> "
            "proto=ESMTP helo=<client.example>")


def by_checks(action: str) -> str:
    """cleanup's line when header_checks say ``action`` (it quotes the header)."""
    return WHOLE.format(program="cleanup") + f"{action}: header Subject: secret plans " + (
        f"{ENVELOPE}: matched")


def by_milter(action: str) -> str:
    return WHOLE.format(program="cleanup") + f"milter-{action}: END-OF-MESSAGE " + (
        ENVELOPE.replace(";", f": milter triggers {action.upper()} action;"))


@pytest.mark.parametrize(
    ("line", "status", "detail"),
    [
        pytest.param(WHOLE.format(program="qmgr") + "from=<app@example.com>, status=expired, "
                     "returned to sender", "expired", EXPIRED_DETAIL, id="expired"),
        pytest.param(WHOLE.format(program="qmgr") + "removed", "removed", REMOVED_DETAIL,
                     id="removed"),
        pytest.param(WHOLE.format(program="postsuper") + "removed", "deleted", DELETED_DETAIL,
                     id="deleted"),
        pytest.param(WHOLE.format(program="smtpd") + "discard: RCPT from x[192.0.2.1]: "
                     "<a@example.org>: Recipient address triggers DISCARD action; "
                     "from=<app@example.com> to=<a@example.org> proto=ESMTP helo=<x>",
                     "discarded", "discarded by Postfix's checks", id="access-discard"),
        pytest.param(by_checks("discard"), "discarded", "discarded by Postfix's checks",
                     id="discard"),
        pytest.param(by_milter("discard"), "discarded", "discarded by a milter",
                     id="milter-discard"),
        pytest.param(by_checks("hold"), "held", "held in Postfix's hold queue by its checks",
                     id="hold"),
        pytest.param(by_milter("hold"), "held", "held in Postfix's hold queue by a milter",
                     id="milter-hold"),
        pytest.param(WHOLE.format(program="postsuper") + "placed on hold", "held",
                     "held in Postfix's hold queue by an administrator", id="postsuper-hold"),
        pytest.param(WHOLE.format(program="postsuper") + "released from hold", "released",
                     "released from Postfix's hold queue by an administrator",
                     id="postsuper-release"),
    ],
)
def test_lines_about_the_whole_message_are_parsed(line: str, status: str, detail: str) -> None:
    """Only the kind of line is kept: a discard or hold line quotes the header that
    matched (here a Subject) and the envelope."""
    event = delivery(line)
    assert event is not None
    assert (event.queue_id, event.recipient, event.status, event.reply) == (
        "4Wq1Zk3sZnz9vBQ", None, status, detail)
    assert not event.hard_bounce


@pytest.mark.parametrize(
    "line",
    [
        # postsuper's summary of a run: about no queue id.
        pytest.param("Dec 06 10:44:12 mx postfix/postsuper[4215]: Placed on hold: 1 message",
                     id="hold-summary"),
        pytest.param("Dec 06 10:44:13 mx postfix/postsuper[4216]: Released from hold: 1 "
                     "message", id="release-summary"),
        # The same words from another program are not an administrator's.
        pytest.param(WHOLE.format(program="qmgr") + "placed on hold", id="qmgr-hold"),
        pytest.param(WHOLE.format(program="cleanup") + "released from hold",
                     id="cleanup-release"),
        pytest.param(WHOLE.format(program="postsuper") + "released from hold queue",
                     id="more-after"),
    ],
)
def test_only_postsupers_own_hold_and_release_lines_are_about_a_message(line: str) -> None:
    assert delivery(line) is None


async def accepted_message(pool: asyncpg.Pool, *recipients: str) -> uuid.UUID:
    async with pool.acquire() as conn:
        accepted = await enqueue(
            conn, submission(uuid.uuid4().hex, *recipients), ROOMY)
    return accepted.id


async def relay_as(pool: asyncpg.Pool, message_id: uuid.UUID, queue_id: str, *,
                   found_in_log: bool = False, queue_host: str | None = None) -> None:
    """Store Postfix's answer as the relay does (``found_in_log``: read from its log
    after an interrupted attempt; ``queue_host``: whose Postfix queued it)."""
    row = Claimed(message_id, "app@example.com", [], b"", attempts=1)
    async with pool.acquire() as conn:
        await record(conn, RelayConfig("127.0.0.1", 25, 3, 1.0), row,
                     SubmitResult(Outcome.QUEUED, f"250 queued as {queue_id}", queue_id),
                     found_in_log=found_in_log, queue_host=queue_host)


async def sent_through_postfix(pool: asyncpg.Pool, port: int, host: str, recipient: str,
                              subject: str = "hi") -> tuple[uuid.UUID, SmtpResult]:
    """A message of ours sent to the real Postfix on ``port`` (its Message-ID ours), and
    stored as the relay stores Postfix's answer, queued by ``host``'s Postfix."""
    message_id = await accepted_message(pool, recipient)
    data = (f"From: app@example.com\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{message_id.hex}@example.com>\r\n\r\nbody\r\n").encode()
    result = await asyncio.to_thread(send_message, port, data, "app@example.com", [recipient])
    assert result.accepted, result
    await relay_as(pool, message_id, result.queue_id, queue_host=host)
    return message_id, result


async def relayed_message(pool: asyncpg.Pool, queue_id: str, *recipients: str,
                          found_in_log: bool = False) -> uuid.UUID:
    message_id = await accepted_message(pool, *recipients)
    await relay_as(pool, message_id, queue_id, found_in_log=found_in_log)
    return message_id


async def follower_at_end(
    pool: asyncpg.Pool, tmp_path: Path, existing: str = "", metrics: Metrics | None = None
) -> tuple[Path, MaillogFollower]:
    """A maillog holding ``existing`` and a follower that starts where it ends."""
    log_file = tmp_path / "maillog"
    log_file.write_text(existing)
    follower = MaillogFollower(pool, log_file, metrics)
    await follower.poll()  # takes the log's lease; no row yet: it starts at the end
    return log_file, follower


async def message_status(pool: asyncpg.Pool, message_id: int) -> str:
    status: str = await pool.fetchval(
        "SELECT status FROM outbound_messages WHERE id = $1", message_id
    )
    return status


def line(queue_id: str, recipient: str, status: str, dsn: str, reply: str) -> str:
    return (f"Nov 23 15:12:49 mx postfix/smtp[7]: {queue_id}: to=<{recipient}>, relay=x, "
            f"delay=0, delays=0/0/0/0, dsn={dsn}, status={status} ({reply})\n")


def sent(queue_id: str, recipient: str) -> str:
    return line(queue_id, recipient, "sent", "2.0.0", "250 ok")


def new_queue_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8].upper()


# A line about someone else's message: it moves the read position, nothing else.
OTHERS = "Nov 23 15:12:49 mx postfix/smtpd[2]: connect from unknown[192.0.2.1]\n"


def append(log_file: Path, *lines: str) -> None:
    with log_file.open("a") as out:
        out.write("".join(lines))


async def test_the_follower_tracks_recipients_and_suppresses_hard_bounces(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    old = "Nov 23 old line before the service started\n"
    log_file, follower = await follower_at_end(pool, tmp_path, old)
    queue_id = "QID" + uuid.uuid4().hex[:10].upper()
    bounced = f"gone-{uuid.uuid4().hex[:6]}@example.org"
    message_id = await relayed_message(pool, queue_id, "ok@example.org", bounced)
    append(log_file,
           line(queue_id, "ok@example.org", "deferred", "4.4.1", "connection refused"),
           line(queue_id, "ok@example.org", "sent", "2.0.0", "250 2.0.0 captured"),
           line(queue_id, bounced, "bounced", "5.1.1", "host x said: 550 5.1.1 no such user"),
           line("UNRELATED1", "x@example.org", "sent", "2.0.0", "250 ok")[:-1])
    await follower.poll()
    statuses = dict(await pool.fetch(
        "SELECT address, status FROM outbound_recipients WHERE message_id = $1", message_id
    ))
    assert statuses == {"ok@example.org": "delivered", bounced: "bounced"}
    assert await message_status(pool, message_id) == "partially_delivered"
    suppressed = await pool.fetchrow("SELECT * FROM suppressions WHERE address = $1", bounced)
    assert suppressed["reason"] == "hard_bounce"
    assert "550 5.1.1 no such user" in suppressed["detail"]
    events = await pool.fetch(
        "SELECT event FROM outbound_events WHERE message_id = $1 AND recipient IS NOT NULL "
        "ORDER BY id", message_id,
    )
    assert [e["event"] for e in events] == ["deferred", "delivered", "bounced"]
    # the half line at the end is not consumed; the saved position is before it
    saved = await pool.fetchval(
        "SELECT position FROM maillog_positions WHERE path = $1",
        f"{socket.gethostname()}:{log_file}",
    )
    assert saved == log_file.stat().st_size - len(line("UNRELATED1", "x@example.org", "sent",
                                                       "2.0.0", "250 ok")[:-1])


async def test_a_line_before_its_queue_id_is_known_waits(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("EARLY")
    log_file.write_text(sent(queue_id, "late@example.org"))
    await follower.poll()
    message_id = await relayed_message(pool, queue_id, "late@example.org")
    await follower.poll()
    assert await message_status(pool, message_id) == "delivered"


async def test_a_rotated_file_is_read_from_its_start(pool: asyncpg.Pool, tmp_path: Path) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path, "x" * 1000 + "\n")
    queue_id = new_queue_id("ROT")
    message_id = await relayed_message(pool, queue_id, "rot@example.org")
    log_file.unlink()
    log_file.write_text(sent(queue_id, "rot@example.org"))
    await follower.poll()
    assert await message_status(pool, message_id) == "delivered"


@dataclass
class Watched:
    log_file: Path
    follower: MaillogFollower
    queue_id: str
    recipient: str
    message_id: uuid.UUID


async def watched(pool: asyncpg.Pool, tmp_path: Path) -> Watched:
    """A follower at the end of an empty log, and a relayed message of ours."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id, recipient = new_queue_id("ROT"), f"{uuid.uuid4().hex[:8]}@example.org"
    message_id = await relayed_message(pool, queue_id, recipient)
    return Watched(log_file, follower, queue_id, recipient, message_id)


async def test_a_half_line_of_a_rotated_file_is_not_glued_to_the_new_one(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    w = await watched(pool, tmp_path)
    log_file, follower, queue_id, victim = w.log_file, w.follower, w.queue_id, w.recipient
    log_file.write_text(f"Nov 23 23:59:59 mx postfix/smtp[7]: {queue_id}: to=<{victim}>, dela")
    await follower.poll()
    log_file.rename(tmp_path / "maillog.1")
    log_file.write_text("Nov 24 00:00:01 mx postfix/smtp[9]: OTHERQ1: to=<z@else.example>, "
                        "relay=y, dsn=5.1.1, status=bounced (550 5.1.1 no such user)\n")
    await follower.poll()
    assert await message_status(pool, w.message_id) == "relayed"
    assert not await pool.fetchval("SELECT count(*) FROM suppressions WHERE address = $1", victim)


async def test_lines_written_just_before_a_rename_are_read(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    w = await watched(pool, tmp_path)
    w.log_file.write_text("Nov 23 23:59:58 mx postfix/qmgr[2]: X: removed\n")
    await w.follower.poll()
    # After our last poll, before the rotation:
    append(w.log_file, sent(w.queue_id, w.recipient))
    w.log_file.rename(tmp_path / "maillog.1")
    w.log_file.write_text("Nov 24 00:00:01 mx postfix/qmgr[2]: Y: removed\n")
    await w.follower.poll()
    await w.follower.poll()
    assert await message_status(pool, w.message_id) == "delivered"


async def test_a_file_emptied_in_place_and_refilled_is_read_from_its_start(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    w = await watched(pool, tmp_path)
    w.log_file.write_text("Nov 23 23:59:58 mx postfix/qmgr[2]: X: removed\n" * 5)
    await w.follower.poll()
    with w.log_file.open("r+") as out:  # copytruncate, then more than before, all before a poll
        out.truncate(0)
    append(w.log_file, sent(w.queue_id, w.recipient),
           "Nov 24 00:00:01 mx postfix/qmgr[2]: Y: removed after the rotation\n" * 5)
    await w.follower.poll()
    assert await message_status(pool, w.message_id) == "delivered"


async def test_only_lines_about_our_messages_are_applied(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    ours = new_queue_id("OURS")
    message_id = await relayed_message(pool, ours, "mine@example.org")
    others = [f"OTHER{n}" + uuid.uuid4().hex[:6].upper() for n in range(50)]
    append(log_file, *(sent(queue_id, "someone@example.net") for queue_id in others),
           sent(ours, "mine@example.org"))
    await follower.poll()
    assert await message_status(pool, message_id) == "delivered"
    async with pool.acquire() as conn:  # the log read to its end: past ours' arrival
        host = socket.gethostname()
        assert await our_queue_ids(conn, host, {ours, *others}) == ({ours}, set())
        assert await our_queue_ids(conn, host, set()) == (set(), set())
    # the other mail's lines wait (their queue id may not be stored yet), unapplied
    assert sorted(event.queue_id for _, event in follower._pending) == sorted(others)


async def test_the_log_is_parsed_off_the_event_loop(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catching up on a busy log parses up to MAX_READ per poll (about 200 ms for 4 MiB):
    on the loop, every API request would wait that long."""
    w = await watched(pool, tmp_path)
    loop_thread = threading.current_thread()
    threads: list[threading.Thread] = []

    def recorded(line: str) -> LogLine | None:
        threads.append(threading.current_thread())
        return split_line(line)

    monkeypatch.setattr(maillog, "split_line", recorded)
    append(w.log_file, sent(w.queue_id, w.recipient))
    await w.follower.poll()
    assert await message_status(pool, w.message_id) == "delivered"
    assert threads and loop_thread not in threads


async def test_a_poll_reads_to_the_end_as_the_log_was_when_it_read(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines written while a poll parses are the next poll's: on a busy log, counting
    them against this one would leave the relay waiting on read_past for good."""
    w = await watched(pool, tmp_path)

    def busy(line: str) -> LogLine | None:
        append(w.log_file, "Nov 23 15:12:50 mx postfix/qmgr[2]: OTHER: removed\n")
        return split_line(line)

    monkeypatch.setattr(maillog, "split_line", busy)
    append(w.log_file, sent(w.queue_id, w.recipient))
    before = time.monotonic()
    await w.follower.poll()
    await asyncio.wait_for(w.follower.read_past(before), timeout=2)  # no other poll runs


async def test_a_poll_that_fails_keeps_its_lines_for_the_next(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("KEPT")
    message_id = await relayed_message(pool, queue_id, "kept@example.org")
    log_file.write_text(sent(queue_id, "kept@example.org"))
    await pool.execute("ALTER FUNCTION maillog_apply RENAME TO maillog_apply_away")
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await follower.poll()
    finally:
        await pool.execute("ALTER FUNCTION maillog_apply_away RENAME TO maillog_apply")
    assert await message_status(pool, message_id) == "relayed"
    await follower.poll()  # nothing new in the file: the kept line is applied
    assert await message_status(pool, message_id) == "delivered"


async def test_the_running_follower_outlives_an_unexpected_error(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("LIVE")
    message_id = await relayed_message(pool, queue_id, "live@example.org")
    poll = MaillogFollower.poll
    failed, polled = asyncio.Event(), asyncio.Event()

    async def fails_once(self: MaillogFollower) -> None:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("a bug, not an outage")
        await poll(self)
        polled.set()

    monkeypatch.setattr(MaillogFollower, "poll", fails_once)
    task = asyncio.create_task(follower.run())
    try:
        async with asyncio.timeout(15):
            await failed.wait()
            log_file.write_text(sent(queue_id, "live@example.org"))  # before the next poll
            await polled.wait()
    finally:
        await stop_task(task)
    assert await message_status(pool, message_id) == "delivered"
    assert "maillog follower: unexpected error (RuntimeError), trying again" in caplog.text


async def test_a_follower_started_while_postgres_is_away_starts_when_it_is_back(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log_file = tmp_path / "maillog"
    log_file.write_text("")
    follower = MaillogFollower(pool, log_file)
    take_over = MaillogFollower._take_over
    refused = asyncio.Event()

    async def away_once(self: MaillogFollower, conn: asyncpg.Connection,
                        row: asyncpg.Record | None) -> None:
        if not refused.is_set():
            refused.set()
            # As asyncio raises it: its words name the address, not the type alone.
            raise ConnectionRefusedError(errno.ECONNREFUSED,
                                         "Connect call failed ('127.0.0.1', 5432)")
        await take_over(self, conn, row)

    monkeypatch.setattr(MaillogFollower, "_take_over", away_once)
    monkeypatch.setattr(maillog, "POLL_SECONDS", 0.05)
    task = asyncio.create_task(follower.run())
    try:
        async with asyncio.timeout(15):
            await refused.wait()
            await follower.read_past(time.monotonic())
    finally:
        await stop_task(task)
    assert ("maillog follower: database or file unavailable (ConnectionRefusedError: "
            "Connect call failed ('127.0.0.1', 5432)); said again at most once a minute "
            "until it is back") in caplog.text


@pytest.mark.parametrize("compressed", [False, True])
async def test_a_file_rotated_while_the_service_was_stopped_is_read_to_its_end(
    pool: asyncpg.Pool, tmp_path: Path, compressed: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    w = await watched(pool, tmp_path)
    second = await relayed_message(pool, new_queue_id("NEW"), "new@example.org")
    queue_id = await pool.fetchval("SELECT queue_id FROM outbound_messages WHERE id = $1",
                                   second)
    append(w.log_file, OTHERS)
    await w.follower.poll()  # the position is stored; then the service stops
    append(w.log_file, sent(w.queue_id, w.recipient))  # written while it was stopped
    rotated = w.log_file.with_name("maillog.20261123-151249")
    w.log_file.rename(rotated)
    if compressed:  # postfix logrotate's maillog_file_compressor
        rotated.with_suffix(".gz").write_bytes(rotated.read_bytes())
        rotated.unlink()
    w.log_file.write_text(sent(queue_id, "new@example.org"))
    await w.follower.release()  # as the service does when it stops
    restarted = MaillogFollower(pool, w.log_file)
    await restarted.poll()
    await restarted.poll()
    assert await message_status(pool, second) == "delivered"
    assert await message_status(pool, w.message_id) == ("relayed" if compressed else "delivered")
    assert ("was rotated while no instance read it" in caplog.text) == compressed


async def test_each_host_keeps_its_own_position_in_a_log_at_the_same_path(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Another host's follower of its own log at this path, and a row an older
    version keyed by the path alone (taken over once)."""
    log_file = tmp_path / "maillog"
    queue_id = new_queue_id("OLD")
    message_id = await relayed_message(pool, queue_id, "old@example.org")
    log_file.write_text(OTHERS + sent(queue_id, "old@example.org"))
    inode, size = log_file.stat().st_ino, log_file.stat().st_size
    await pool.executemany(
        "INSERT INTO maillog_positions (path, inode, position) VALUES ($1, $2, $3)",
        [(f"other-host:{log_file}", 4242, 7), (str(log_file), inode, len(OTHERS))])
    follower = MaillogFollower(pool, log_file)
    await follower.poll()
    assert await message_status(pool, message_id) == "delivered"  # read from the old row's
    rows = dict(await pool.fetch("SELECT path, position FROM maillog_positions "
                                 "WHERE path LIKE $1", f"%{log_file}"))
    assert rows == {f"other-host:{log_file}": 7, str(log_file): len(OTHERS),
                    f"{socket.gethostname()}:{log_file}": size}


async def held(pool: asyncpg.Pool, message_id: uuid.UUID) -> list[str]:
    """The details of the message's held events, in no set order."""
    rows = await pool.fetch("SELECT detail FROM outbound_events WHERE message_id = $1 "
                            "AND event = 'held'", message_id)
    return [row["detail"] for row in rows]


async def timeline(pool: asyncpg.Pool, message_id: uuid.UUID) -> list[str]:
    rows = await pool.fetch("SELECT event FROM outbound_events WHERE message_id = $1 "
                            "AND recipient IS NOT NULL ORDER BY id", message_id)
    return [row["event"] for row in rows]


async def test_maillog_host_names_the_log_whatever_the_host_name(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A container started again gets a new host name: with ``maillog_host`` it goes on
    where it stopped, and lines written while none ran are applied; a new name would
    start at the log's end (its first start)."""
    log_file = tmp_path / "maillog"
    log_file.write_text("")
    before = MaillogFollower(pool, log_file, host="mail-1")
    await before.poll()
    await before.release()
    queue_id = new_queue_id("CTR")
    message_id = await relayed_message(pool, queue_id, "ctr@example.org")
    append(log_file, sent(queue_id, "ctr@example.org"))  # while no instance runs
    elsewhere = MaillogFollower(pool, log_file, host="mail-2")
    await elsewhere.poll()
    assert await message_status(pool, message_id) == "relayed"
    after = MaillogFollower(pool, log_file, host="mail-1")
    await after.poll()
    assert after.leading
    assert await message_status(pool, message_id) == "delivered"


async def test_instances_on_one_host_read_a_log_once_between_them(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Each used to apply every line: the timeline doubled, and the one behind set a
    delivered recipient back to deferred."""
    log_file, first = await follower_at_end(pool, tmp_path)
    second = MaillogFollower(pool, log_file)
    await second.poll()  # both follow the log from here
    queue_id = new_queue_id("TWO")
    message_id = await relayed_message(pool, queue_id, "two@example.org")
    append(log_file, line(queue_id, "two@example.org", "deferred", "4.4.1", "connection refused"))
    await first.poll()
    append(log_file, sent(queue_id, "two@example.org"))
    await first.poll()
    await second.poll()
    assert await timeline(pool, message_id) == ["deferred", "delivered"]
    assert await message_status(pool, message_id) == "delivered"
    assert (first.leading, second.leading) == (True, False)


async def test_a_standby_instance_goes_on_where_the_reader_stopped(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At once when the reader releases the log at a stop; once its lease lapses when
    it died or stalled (then it stands down)."""
    monkeypatch.setattr(maillog, "LEASE_SECONDS", 0.5)
    log_file, first = await follower_at_end(pool, tmp_path)
    second = MaillogFollower(pool, log_file)

    async def logged_sent() -> uuid.UUID:
        queue_id = new_queue_id("R")
        message_id = await relayed_message(pool, queue_id, "r@example.org")
        append(log_file, sent(queue_id, "r@example.org"))
        return message_id

    a = await logged_sent()
    await second.poll()
    assert await message_status(pool, a) == "relayed"  # first reads the log
    await first.poll()
    await first.release()  # a stop
    b = await logged_sent()
    await second.poll()
    await first.poll()
    assert (first.leading, second.leading) == (False, True)
    await asyncio.sleep(0.6)  # second stalls (or died): its lease lapses
    c = await logged_sent()
    await first.poll()
    await second.poll()
    assert (first.leading, second.leading) == (True, False)
    for message_id in (a, b, c):
        assert await message_status(pool, message_id) == "delivered"
        assert await timeline(pool, message_id) == ["delivered"]


async def test_a_standby_instances_relay_waits_for_the_reader(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, reader = await follower_at_end(pool, tmp_path)
    standby = MaillogFollower(pool, log_file)
    await standby.poll()
    append(log_file, OTHERS)
    waiting = asyncio.create_task(standby.read_past(time.monotonic()))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # the reader has not read that line yet
    await reader.poll()
    await asyncio.wait_for(waiting, 5)


async def test_a_reader_that_stalled_past_its_lease_goes_on_from_the_saved_position(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It stalls, another instance takes the log, applies a line and stops: the first
    must not read on from where it was, applying that line again."""
    monkeypatch.setattr(maillog, "LEASE_SECONDS", 0.5)
    log_file, first = await follower_at_end(pool, tmp_path)
    second = MaillogFollower(pool, log_file)
    queue_id = new_queue_id("STALL")
    message_id = await relayed_message(pool, queue_id, "stall@example.org")
    await asyncio.sleep(0.6)  # first stalls
    append(log_file, line(queue_id, "stall@example.org", "deferred", "4.4.1", "busy"),
           sent(queue_id, "stall@example.org"))
    await second.poll()
    await second.release()
    await first.poll()
    assert await timeline(pool, message_id) == ["deferred", "delivered"]
    assert await message_status(pool, message_id) == "delivered"


async def test_a_reader_taking_over_mid_rotation_reads_the_old_file_first(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Renamed, and the new file not there yet: the old file's last lines are read."""
    w = await watched(pool, tmp_path)
    append(w.log_file, sent(w.queue_id, w.recipient))
    await w.follower.release()
    w.log_file.rename(tmp_path / "maillog.1")
    second = MaillogFollower(pool, w.log_file)
    await second.poll()
    assert await message_status(pool, w.message_id) == "delivered"


async def test_read_past_waits_for_the_file_that_replaced_a_renamed_one(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The poll that reads a renamed file's last bytes has not read the new file."""
    w = await watched(pool, tmp_path)
    append(w.log_file, OTHERS)
    w.log_file.rename(tmp_path / "maillog.1")
    w.log_file.write_text(sent(w.queue_id, w.recipient))
    waiting = asyncio.create_task(w.follower.read_past(time.monotonic()))
    await w.follower.poll()  # the old file's last line
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await w.follower.poll()
    await asyncio.wait_for(waiting, 5)
    assert await message_status(pool, w.message_id) == "delivered"


@pytest.mark.parametrize("rotation", ["renamed, no new file yet", "emptied in place"])
async def test_a_standby_instances_relay_waits_for_the_reader_through_a_rotation(
    pool: asyncpg.Pool, tmp_path: Path, rotation: str
) -> None:
    log_file, reader = await follower_at_end(pool, tmp_path, OTHERS * 20)
    standby = MaillogFollower(pool, log_file)
    await standby.poll()
    queue_id = new_queue_id("ROT")
    message_id = await relayed_message(pool, queue_id, "rot@example.org")
    if rotation == "emptied in place":  # copytruncate, then our line: shorter than before
        log_file.write_text(OTHERS + sent(queue_id, "rot@example.org"))
    else:
        append(log_file, sent(queue_id, "rot@example.org"))
        log_file.rename(tmp_path / "maillog.1")
    waiting = asyncio.create_task(standby.read_past(time.monotonic()))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # the reader has not polled since
    await reader.poll()
    await asyncio.wait_for(waiting, 5)
    assert await message_status(pool, message_id) == "delivered"


class _LostAfterCommit:
    """A pool whose connection, once armed, fails after the transaction committed (a
    COMMIT whose answer is lost, or a connection reset on its way back to the pool)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool, self.armed = pool, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._pool.acquire() as conn:
            yield conn
        if self.armed:
            self.armed = False
            raise ConnectionResetError("connection lost after COMMIT")


async def test_a_commit_whose_answer_was_lost_applies_no_line_twice(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    lossy = _LostAfterCommit(pool)
    follower._pool = lossy  # type: ignore[assignment]
    queue_id = new_queue_id("LOST")
    log_file.write_text(sent(queue_id, "lost@example.org"))
    await follower.poll()  # its queue id is not stored yet: the line waits
    message_id = await relayed_message(pool, queue_id, "lost@example.org")
    lossy.armed = True
    with pytest.raises(ConnectionResetError):
        await follower.poll()  # applied and committed, then the error
    await follower.poll()
    assert await timeline(pool, message_id) == ["delivered"]


async def test_a_slow_poll_keeps_its_lease(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease counts from the save, not from the start of a poll slower than it."""
    monkeypatch.setattr(maillog, "LEASE_SECONDS", 0.5)
    log_file, first = await follower_at_end(pool, tmp_path)
    second = MaillogFollower(pool, log_file)
    apply = maillog.apply_events

    async def slow(conn: asyncpg.Connection, host: str, events: list[DeliveryEvent]
                   ) -> tuple[set[int], set[str]]:
        await asyncio.sleep(0.6)
        return await apply(conn, host, events)

    monkeypatch.setattr(maillog, "apply_events", slow)
    await first.poll()
    monkeypatch.setattr(maillog, "apply_events", apply)
    await second.poll()
    assert (first.leading, second.leading) == (True, False)


async def test_a_log_that_appears_later_is_read_from_its_start_without_a_warning(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_file = tmp_path / "maillog"
    first = MaillogFollower(pool, log_file)
    await first.poll()  # no log yet
    await first.release()
    queue_id = new_queue_id("NEW")
    message_id = await relayed_message(pool, queue_id, "new@example.org")
    log_file.write_text(sent(queue_id, "new@example.org"))
    second = MaillogFollower(pool, log_file)
    await second.poll()
    assert await message_status(pool, message_id) == "delivered"
    assert "rotated" not in caplog.text


async def test_metrics_say_which_instance_reads_and_how_far_behind_it_is(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_file = tmp_path / "maillog"
    log_file.write_text("")
    reader_metrics, standby_metrics = Metrics(), Metrics()
    reader = MaillogFollower(pool, log_file, reader_metrics)
    standby = MaillogFollower(pool, log_file, standby_metrics)
    await reader.poll()
    await standby.poll()
    log_file.write_text(OTHERS * 10)
    monkeypatch.setattr(maillog, "MAX_READ", len(OTHERS) * 4)
    await reader.poll()

    def sample(metrics: Metrics, name: str) -> float | None:
        return metrics.registry.get_sample_value(name)

    assert sample(reader_metrics, "postwarden_maillog_reading") == 1
    assert sample(reader_metrics, "postwarden_maillog_unread_bytes") == len(OTHERS) * 6
    assert sample(standby_metrics, "postwarden_maillog_reading") == 0
    assert sample(standby_metrics, "postwarden_maillog_unread_bytes") == 0


async def _failing_poll_counts_what_it_read(
    reader: MaillogFollower, log_file: Path, metrics: Metrics
) -> None:
    """Three lines more in the log and a poll the database fails: they count as behind."""
    with log_file.open("a") as log:
        log.write(OTHERS * 3)
    with pytest.raises(DB_ERRORS):
        await reader.poll()
    assert metrics.registry.get_sample_value(
        "postwarden_maillog_unread_bytes") == len(OTHERS) * 3


async def test_how_far_behind_keeps_growing_while_the_database_is_away(
    fresh_database_url: str, pg_server: PgServer, tmp_path: Path
) -> None:
    """The lines wait for the database, and the gauge an admin alerts on says how many
    pile up, instead of keeping its last value."""
    log_file = tmp_path / "maillog"
    log_file.write_text(OTHERS)
    database = fresh_database_url.rsplit("/", 1)[1]
    pool = await create_pool(fresh_database_url, min_size=1, max_size=2)
    admin = await asyncpg.connect(pg_server.admin_dsn)
    metrics = Metrics()
    reader = MaillogFollower(pool, log_file, metrics)
    try:
        await reader.poll()
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1", database)
        await _failing_poll_counts_what_it_read(reader, log_file, metrics)
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
        await pool.close()


async def test_lines_read_but_not_stored_still_count_as_behind(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """A poll that read lines and then failed (its save timed out behind a lock) keeps
    them in memory for the next: they are behind until stored, and the gauge says so."""
    log_file = tmp_path / "maillog"
    log_file.write_text(OTHERS)
    pool = await create_pool(f"{fresh_database_url}?statement_timeout=500", max_size=2)
    locker = await asyncpg.connect(fresh_database_url)
    metrics = Metrics()
    reader = MaillogFollower(pool, log_file, metrics)
    try:
        await reader.poll()
        holding = locker.transaction()
        await holding.start()
        await locker.execute("SELECT * FROM maillog_positions FOR UPDATE")
        await _failing_poll_counts_what_it_read(reader, log_file, metrics)
        await holding.rollback()
        await reader.poll()
        assert metrics.registry.get_sample_value("postwarden_maillog_unread_bytes") == 0
    finally:
        await locker.close()
        await pool.close()


async def test_a_line_waiting_for_its_queue_id_at_a_stop_is_applied_then(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay stops first and stores its last queue ids; the follower reads once
    more before it hands the log over (the next reader would not see such a line)."""
    monkeypatch.setattr(maillog, "POLL_SECONDS", 0.05)
    log_file, follower = await follower_at_end(pool, tmp_path)
    task = asyncio.create_task(follower.run())
    queue_id = new_queue_id("LAST")
    append(log_file, sent(queue_id, "last@example.org"))
    moment = time.monotonic()
    await asyncio.wait_for(follower.read_past(moment), 5)  # read: it waits for its id
    message_id = await relayed_message(pool, queue_id, "last@example.org")  # the relay
    follower.stop()
    await asyncio.wait_for(task, 10)
    assert await message_status(pool, message_id) == "delivered"
    assert not follower.leading


def test_a_quoted_address_cannot_pose_as_the_address_we_gave() -> None:
    """A rewrite target's quoted local part holding ">, orig_to=<...>" is one address."""
    event = delivery(PREFIX + 'to=<"x>, orig_to=<victim@example.org>, y"@evil.example>, '
                     "relay=x, delay=0, delays=0/0/0/0, dsn=5.1.1, status=bounced (550 no)")
    assert event is not None
    assert (event.recipient, event.rewritten) == (
        '"x>, orig_to=<victim@example.org>, y"@evil.example', False)


async def test_an_alias_delivered_to_one_member_stays_delivered(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Each member's line names the alias (orig_to=); one bouncing or deferred after
    another was delivered no longer makes the recipient bounced and the message failed."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("TEAM")
    message_id = await relayed_message(pool, queue_id, "team@example.org")

    def member(to: str, status: str, dsn: str, reply: str) -> str:
        return (f"Nov 23 15:12:49 mx postfix/local[7]: {queue_id}: to=<{to}>, "
                f"orig_to=<team@example.org>, relay=local, delay=0, delays=0/0/0/0, "
                f"dsn={dsn}, status={status} ({reply})\n")

    log_file.write_text(member("ann@mx.example", "sent", "2.0.0", "delivered to mailbox")
                        + member("bob@mx.example", "bounced", "5.1.1", "unknown user")
                        + member("cid@mx.example", "deferred", "4.2.2", "mailbox full"))
    await follower.poll()
    assert await timeline(pool, message_id) == ["delivered", "bounced", "deferred"]
    assert await pool.fetchval("SELECT status FROM outbound_recipients WHERE message_id = $1",
                               message_id) == "delivered"
    assert await message_status(pool, message_id) == "delivered"
    assert not await pool.fetchval("SELECT count(*) FROM suppressions WHERE address = $1",
                                   "team@example.org")


def about_message(queue_id: str, program: str, text: str) -> str:
    return f"Nov 23 15:12:49 mx postfix/{program}[9]: {queue_id}: {text}\n"


def expired(queue_id: str) -> str:
    return about_message(queue_id, "qmgr", "from=<app@example.com>, status=expired, "
                                           "returned to sender")


def removed(queue_id: str, program: str = "qmgr") -> str:
    return about_message(queue_id, program, "removed")


async def recipients(pool: asyncpg.Pool, message_id: uuid.UUID) -> dict[str, tuple[str, str]]:
    rows = await pool.fetch("SELECT address, status, detail FROM outbound_recipients "
                            "WHERE message_id = $1", message_id)
    return {r["address"]: (r["status"], r["detail"]) for r in rows}


async def test_an_expired_message_bounces_its_deferred_recipients(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Postfix gave up (maximal_queue_lifetime) and returned it to its sender: no line
    per recipient says so. The last reply was temporary: nobody is suppressed."""
    metrics = Metrics()
    log_file, follower = await follower_at_end(pool, tmp_path, metrics=metrics)
    queue_id = new_queue_id("EXP")
    later = f"later-{uuid.uuid4().hex[:6]}@example.org"
    message_id = await relayed_message(pool, queue_id, "ok@example.org", later)
    append(log_file, sent(queue_id, "ok@example.org"),
           line(queue_id, later, "deferred", "4.2.0", "host x said: 450 4.2.0 try later"),
           expired(queue_id), removed(queue_id))
    await follower.poll()
    found = await recipients(pool, message_id)
    assert found["ok@example.org"] == ("delivered", "250 ok")
    assert found[later] == ("bounced",
                            f"{EXPIRED_DETAIL} (last: host x said: 450 4.2.0 try later)")
    assert await message_status(pool, message_id) == "partially_delivered"
    assert await timeline(pool, message_id) == ["delivered", "deferred", "bounced"]
    assert await pool.fetchval("SELECT count(*) FROM suppressions WHERE address = $1",
                               later) == 0
    counted = {status: metrics.registry.get_sample_value(
        "postwarden_deliveries_total", {"status": status})
        for status in ("delivered", "deferred", "expired", "removed")}
    assert counted == {"delivered": 1, "deferred": 1, "expired": 1, "removed": None}


async def test_the_recipients_of_a_deleted_message_fail(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """An administrator deleted it (postsuper -d) while one recipient was deferred and
    another not tried yet."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("DEL")
    message_id = await relayed_message(pool, queue_id, "ok@example.org", "later@example.org",
                                       "untried@example.org")
    append(log_file, sent(queue_id, "ok@example.org"),
           line(queue_id, "later@example.org", "deferred", "4.2.0", "450 busy"),
           removed(queue_id, "postsuper"))
    await follower.poll()
    assert await recipients(pool, message_id) == {
        "ok@example.org": ("delivered", "250 ok"),
        "later@example.org": ("failed", f"{DELETED_DETAIL} (last: 450 busy)"),
        "untried@example.org": ("failed", DELETED_DETAIL),
    }
    assert await message_status(pool, message_id) == "partially_delivered"
    assert await timeline(pool, message_id) == ["delivered", "deferred", "failed", "failed"]


async def test_a_recipient_refused_in_an_attempt_settled_from_the_log_fails_at_the_end(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The relay read Postfix's answer from the log, so not which recipient it refused
    at RCPT: once qmgr is done with the message, one left without a line was that."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("FOUND")
    message_id = await relayed_message(pool, queue_id, "ok@example.org", "refused@example.org",
                                       found_in_log=True)
    append(log_file, sent(queue_id, "ok@example.org"), removed(queue_id))
    await follower.poll()
    assert await recipients(pool, message_id) == {
        "ok@example.org": ("delivered", "250 ok"),
        "refused@example.org": ("failed", REMOVED_DETAIL),
    }
    assert await message_status(pool, message_id) == "partially_delivered"


async def test_a_recipient_whose_line_was_lost_is_not_failed_at_the_end(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The relay stored Postfix's refusals: a recipient without a line when qmgr is done
    had it lost (or logged under another address), not refused."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("LOST")
    message_id = await relayed_message(pool, queue_id, "ok@example.org", "lost@example.org")
    append(log_file, sent(queue_id, "ok@example.org"), removed(queue_id))
    await follower.poll()
    assert await recipients(pool, message_id) == {
        "ok@example.org": ("delivered", "250 ok"), "lost@example.org": ("relayed", None)}
    assert await message_status(pool, message_id) == "relayed"


async def test_a_message_done_with_is_removed_without_a_trace(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("DONE")
    message_id = await relayed_message(pool, queue_id, "ok@example.org",
                                       found_in_log=True)
    append(log_file, sent(queue_id, "ok@example.org"), removed(queue_id))
    await follower.poll()
    assert await message_status(pool, message_id) == "delivered"
    events = await pool.fetch("SELECT event FROM outbound_events WHERE message_id = $1",
                              message_id)
    assert sorted(e["event"] for e in events) == [
        "accepted", "delivered", "found_in_log", "relayed"]


async def test_a_line_about_the_whole_message_is_about_the_one_relayed_last_under_its_id(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Postfix reuses short queue ids: an old message left without a result (its lines
    were lost) is not settled by a newer one's. Newer by relaying, not by acceptance:
    the one accepted first may have waited out retries."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("REUSED")
    late = await accepted_message(pool, "late@example.org")
    early = await relayed_message(pool, queue_id, "early@example.org")
    await relay_as(pool, late, queue_id)
    append(log_file, removed(queue_id, "postsuper"))
    await follower.poll()
    assert (await message_status(pool, early), await message_status(pool, late)) == (
        "relayed", "failed")


async def test_a_recipient_line_under_a_reused_queue_id_is_about_the_message_relayed_last(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Messages are never purged: a new message's bounce under an old one's queue id
    used to rewrite the old, delivered message to failed (and raise webhooks for it)."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("AGAIN")
    address = f"again-{uuid.uuid4().hex[:6]}@example.org"
    old = await relayed_message(pool, queue_id, address)
    append(log_file, sent(queue_id, address), removed(queue_id))
    await follower.poll()
    new = await relayed_message(pool, queue_id, address)
    append(log_file, line(queue_id, address, "bounced", "5.2.2", "552 5.2.2 mailbox full"))
    await follower.poll()
    assert (await recipients(pool, old), await timeline(pool, old)) == (
        {address: ("delivered", "250 ok")}, ["delivered"])
    assert await message_status(pool, old) == "delivered"
    assert (await recipients(pool, new), await timeline(pool, new)) == (
        {address: ("bounced", "552 5.2.2 mailbox full")}, ["bounced"])
    assert await message_status(pool, new) == "failed"


async def relayed_through(pool: asyncpg.Pool, host: str, queue_id: str, address: str
                          ) -> uuid.UUID:
    """A message relayed through ``host``'s Postfix, the relay storing the host's name
    with Postfix's 250."""
    message_id = await accepted_message(pool, address)
    await relay_as(pool, message_id, queue_id, queue_host=host)
    return message_id


async def test_a_line_of_a_hosts_log_is_about_a_message_relayed_through_that_host(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Each host's Postfix has queue ids of its own: the same id in another host's log
    names another message, ours or not."""
    queue_id = new_queue_id("HOSTS")
    through_b = await relayed_through(pool, "mail-b", queue_id, "b@example.org")
    through_a = await relayed_through(pool, "mail-a", queue_id, "a@example.org")  # later
    log_file = tmp_path / "maillog"
    log_file.write_text("")
    follower = MaillogFollower(pool, log_file, host="mail-b")
    await follower.poll()
    append(log_file, sent(queue_id, "a@example.org"), sent(queue_id, "b@example.org"))
    await follower.poll()
    assert (await message_status(pool, through_a), await message_status(pool, through_b)) == (
        "relayed", "delivered")
    async with pool.acquire() as conn:
        assert await our_queue_ids(conn, "mail-c", {queue_id}) == (set(), set())


async def test_a_bounce_for_this_message_only_leaves_the_address_unsuppressed(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Too large for one recipient's server (5.3.4) says nothing of the next message to
    them; no such user (5.1.1) does. Both bounce all the same."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("SIZE")
    big = f"big-{uuid.uuid4().hex[:6]}@example.org"
    gone = f"gone-{uuid.uuid4().hex[:6]}@example.org"
    message_id = await relayed_message(pool, queue_id, big, gone)
    append(log_file,
           line(queue_id, big, "bounced", "5.3.4", "host x said: 552 5.3.4 message too big"),
           line(queue_id, gone, "bounced", "5.1.1", "host x said: 550 5.1.1 no such user"))
    await follower.poll()
    assert {a: s for a, (s, _) in (await recipients(pool, message_id)).items()} == {
        big: "bounced", gone: "bounced"}
    assert await message_status(pool, message_id) == "failed"
    assert await timeline(pool, message_id) == ["bounced", "bounced"]
    suppressed = await pool.fetch("SELECT address, reason FROM suppressions "
                                  "WHERE address = ANY($1::text[])", [big, gone])
    assert [tuple(row) for row in suppressed] == [(gone, "hard_bounce")]


@pytest.mark.parametrize(("kind", "detail"), [
    ("milter-discard: END-OF-MESSAGE from localhost[127.0.0.1]: milter triggers DISCARD "
     "action; from=<app@example.com> to=<a@example.org> proto=ESMTP helo=<x>",
     "discarded by a milter"),
    ("discard: header Subject: hi from localhost[127.0.0.1]; from=<app@example.com> "
     "to=<a@example.org> proto=ESMTP helo=<x>: spam", "discarded by Postfix's checks"),
])
async def test_a_discarded_message_fails(
    pool: asyncpg.Pool, tmp_path: Path, kind: str, detail: str
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("DROP")
    message_id = await relayed_message(pool, queue_id, "a@example.org", "b@example.org")
    append(log_file, about_message(queue_id, "cleanup", kind))
    await follower.poll()
    assert await recipients(pool, message_id) == {
        "a@example.org": ("failed", detail), "b@example.org": ("failed", detail)}
    assert await message_status(pool, message_id) == "failed"


async def test_a_held_message_shows_it_and_waits(pool: asyncpg.Pool, tmp_path: Path) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("HOLD")
    message_id = await relayed_message(pool, queue_id, "a@example.org")
    append(log_file, about_message(
        queue_id, "cleanup", "milter-hold: END-OF-MESSAGE from localhost[127.0.0.1]: milter "
        "triggers HOLD action; from=<app@example.com> to=<a@example.org> proto=ESMTP "
        "helo=<x>"))
    await follower.poll()
    events = await pool.fetch("SELECT recipient, event, detail FROM outbound_events "
                              "WHERE message_id = $1 AND event = 'held'", message_id)
    assert [tuple(e) for e in events] == [
        (None, "held", "held in Postfix's hold queue by a milter")]
    assert await recipients(pool, message_id) == {"a@example.org": ("relayed", None)}
    assert await message_status(pool, message_id) == "relayed"


@pytest.mark.parametrize("stored", [True, False])
async def test_a_hold_logged_as_the_message_arrives_is_its(
    pool: asyncpg.Pool, tmp_path: Path, stored: bool
) -> None:
    """header_checks' HOLD on a header before the Message-ID comes between the message's
    first line and the Message-ID line naming ours: read in one read with them, it was
    dropped (no held event, no send.held). Read before the relay ``stored`` Postfix's
    answer, it waits for it as the message's other lines do."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("HOLD")
    message_id = await accepted_message(pool, "a@example.org")
    if stored:
        await relay_as(pool, message_id, queue_id)
    append(log_file, about_message(queue_id, "smtpd", "client=localhost[127.0.0.1]"),
           about_message(queue_id, "cleanup", "hold: header Subject: x from "
                                              "localhost[127.0.0.1]; from=<a@b> to=<c@d>"),
           about_message(queue_id, "cleanup", f"message-id=<{message_id.hex}@example.com>"))
    await follower.poll()
    if not stored:
        await relay_as(pool, message_id, queue_id)
        await follower.poll()
    assert await held(pool, message_id) == ["held in Postfix's hold queue by its checks"]


def arriving(queue_id: str, message_id: str) -> str:
    return (f"Nov 23 15:12:49 mx postfix/smtpd[5]: {queue_id}: client=x.example[192.0.2.1]\n"
            f"Nov 23 15:12:49 mx postfix/cleanup[6]: {queue_id}: message-id={message_id}\n")


async def test_lines_of_mail_seen_arriving_as_another_s_never_wait(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nor are they asked about: on a busy server nearly every line is other mail's.
    Postfix reuses the queue id for a message of ours afterwards: that one's lines are
    applied."""
    asked: list[set[str]] = []
    ask = deliveryapply.our_queue_ids

    async def recording(conn: asyncpg.Connection, host: str, queue_ids: set[str]
                        ) -> tuple[set[str], set[str]]:
        asked.append(set(queue_ids))
        return await ask(conn, host, queue_ids)

    log_file, follower = await follower_at_end(pool, tmp_path)
    monkeypatch.setattr(deliveryapply, "our_queue_ids", recording)
    theirs, unknown = new_queue_id("THEIRS"), new_queue_id("UNKNOWN")
    append(log_file, arriving(theirs, "<1.2@mua.example>"), sent(theirs, "x@example.net"),
           removed(theirs), sent(unknown, "y@example.net"))
    await follower.poll()
    assert asked == [{unknown}]  # a line not seen arriving waits as before
    message_id = await relayed_message(pool, theirs, "ours@example.org")
    # Other mail again under that queue id, never removed (its lines were lost), then
    # ours: its first line starts the queue id afresh.
    append(log_file, arriving(theirs, "<1.3@mua.example>"),
           f"Nov 23 15:12:50 mx postfix/smtpd[5]: {theirs}: client=x.example[192.0.2.1]\n",
           sent(theirs, "ours@example.org"))
    await follower.poll()
    assert await message_status(pool, message_id) == "delivered"


async def test_a_reader_back_after_another_read_on_forgets_the_other_mail_it_knew(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Meanwhile the other instance read a queue id of other mail start afresh as ours."""
    monkeypatch.setattr(maillog, "LEASE_SECONDS", 0.5)
    log_file, first = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("REUSE")
    append(log_file, arriving(queue_id, "<9.9@mua.example>"))
    await first.poll()
    await asyncio.sleep(0.6)  # first stalls
    second = MaillogFollower(pool, log_file)
    append(log_file, f"Nov 23 15:12:50 mx postfix/smtpd[5]: {queue_id}: client=x[192.0.2.1]\n")
    await second.poll()
    await second.release()
    message_id = await relayed_message(pool, queue_id, "ours@example.org")
    append(log_file, sent(queue_id, "ours@example.org"))
    await first.poll()
    assert await message_status(pool, message_id) == "delivered"


async def test_a_line_the_database_refuses_is_left_out_and_the_rest_applied(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A NUL in an address (a torn write) about a message of ours: PostgreSQL refuses
    the text. The poll's statement failed at every poll, and no line of any message
    was applied again; now that line alone is left out, logged and counted. (The reader
    ends a line at a NUL now, test_maillog_nul_run: here it keeps it, as any value the
    database might refuse.)"""
    monkeypatch.setattr(maillog, "_lines", lambda data: data.split(b"\n"))
    metrics = Metrics()
    log_file, follower = await follower_at_end(pool, tmp_path, metrics=metrics)
    torn, good = new_queue_id("TORN"), new_queue_id("GOOD")
    torn_message = await relayed_message(pool, torn, "a@example.org", "c@example.org")
    good_message = await relayed_message(pool, good, "b@example.org")
    append(log_file, sent(torn, "a@example.org"),
           line(torn, "c\x00@example.org", "sent", "2.0.0", "250 ok"),
           sent(good, "b@example.org"))
    await follower.poll()
    assert await message_status(pool, good_message) == "delivered"
    assert await recipients(pool, torn_message) == {
        "a@example.org": ("delivered", "250 ok"), "c@example.org": ("relayed", None)}
    assert metrics.maillog_refused_lines._value.get() == 1
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"maillog follower: {torn}: a delivered line the database refuses "
        "(CharacterNotInRepertoireError) is left out"]
    await follower.poll()  # done with: not tried again
    assert metrics.maillog_refused_lines._value.get() == 1


@pytest.mark.parametrize(("form", "told"), [
    # journalctl -o cat: the message alone, no program nor pid.
    pytest.param("", True, id="journalctl-cat"),
    # rsyslog's RSYSLOG_SyslogProtocol23Format: the program and its pid are fields.
    pytest.param("<22>1 2026-12-06T10:44:12.123456+00:00 mx postfix/smtp 4242 - - ", False,
                 id="rfc5424"),
    # ... as rsyslog writes it by default: "postfix", the daemon cut off at the slash.
    pytest.param("<22>1 2026-12-06T10:44:12.123456+00:00 mx postfix 4242 - -  ", True,
                 id="rfc5424-without-daemon"),
    pytest.param("Dec  6 10:44:12 mx postfix/smtp[4242]: ", False, id="traditional"),
])
async def test_a_log_in_a_form_the_follower_does_not_read_is_told(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture, form: str,
    told: bool,
) -> None:
    """A log none of whose lines the follower could read (journalctl's message alone,
    another program's file) tracked nothing, and said nothing."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    lines = (f"{form}{new_queue_id('FORM')}: to=<a@example.org>, relay=x, delay=0, "
             "delays=0/0/0/0, dsn=2.0.0, status=sent (250 ok)\n" for _ in range(1000))
    log_file.write_text("".join(lines))
    await follower.poll()
    await follower.release()
    warned = [r for r in caplog.records if "is a Postfix daemon's" in r.getMessage()]
    assert len(warned) == int(told)
