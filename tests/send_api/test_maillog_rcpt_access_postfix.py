"""An access table's DISCARD or HOLD at RCPT, in the send API's listener, with the real
Postfix. Told for a message's first recipient, before its queue file opens, smtpd logs
it under ``NOQUEUE`` and the queue id only in its next line (``QID: client=``); no
later line says it: a discarded message (cleanup logs not even its Message-ID) stayed
``relayed`` for good, and a held one got no ``held`` event. Told later, the line names
the queue id."""

from __future__ import annotations

import asyncio
import re
import smtplib
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.periodic import stop_task
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.noqueuestops import NoQueueStops
from postwarden_admin_api.send.receipts import OPEN_RECEIPT_LIMIT, parse_receipt
from postwarden_admin_api.send.syslogline import split_line
from tests.fixtures.postfix import PostfixInstance, master_cf_options, running_postfix, send_message
from tests.test_contrib_postfix import POSTFIX_DIR

from .test_maillog import (
    accepted_message,
    append,
    delivery,
    follower_at_end,
    held,
    message_status,
    recipients,
    relay_as,
)
from .test_relay import database_url  # noqa: F401 - a fixture
from .test_review_held_receipt import hang_up_after_the_dot
from .test_review_log_lag import cut_off, relayed

pytestmark = pytest.mark.postfix

DISCARDED = "discarded by Postfix's checks"


@pytest.fixture(scope="module")
def postfix() -> Iterator[tuple[PostfixInstance, int]]:
    """Postfix with the send API's listener, its recipient restrictions checking an
    access table first; the listener's port."""
    # Not under pytest's 0700 tmp: Postfix's smtpd reads it as the postfix user.
    with tempfile.TemporaryDirectory(prefix="postwarden-access-") as directory:
        Path(directory).chmod(0o755)
        access = Path(directory) / "access"
        access.write_text("/^discard-/ DISCARD\n/^hold-/ HOLD\n")
        access.chmod(0o644)
        # A HOLD the next check refuses the recipient after.
        refuse = Path(directory) / "refuse"
        refuse.write_text("/^hold-refused-/ REJECT\n")
        refuse.chmod(0o644)
        options = {**master_cf_options(POSTFIX_DIR / "master.cf.send-api"),
                   "smtpd_recipient_restrictions":
                   f"check_recipient_access,regexp:{access},"
                   f"check_recipient_access,regexp:{refuse},permit_mynetworks,reject"}
        ports: list[int] = []
        with running_postfix(configure=lambda instance: ports.append(
                instance.add_smtpd_listener(options))) as (instance, _):
            yield instance, ports[0]


async def sent(pool: asyncpg.Pool, postfix: tuple[PostfixInstance, int], host: str,
               *recipients: str) -> uuid.UUID:
    """A message of ours relayed to the listener, its session's lines all logged."""
    instance, port = postfix
    message_id = await accepted_message(pool, *recipients)
    data = (f"From: app@example.com\r\nTo: {recipients[0]}\r\nSubject: hi\r\n"
            f"Message-ID: <{message_id.hex}@example.com>\r\n\r\nbody\r\n").encode()
    result = await asyncio.to_thread(send_message, port, data, "app@example.com",
                                     list(recipients))
    assert result.accepted and result.queue_id is not None, result
    await relay_as(pool, message_id, result.queue_id, queue_host=host)
    await asyncio.to_thread(instance.wait_for_log, rf"{result.queue_id}: client=(?s:.*?)"
                            r"postwarden-send/smtpd\[\d+\]: disconnect from", 30)
    return message_id


def names(*kinds: str) -> list[str]:
    return [f"{kind}-{uuid.uuid4().hex[:8]}@example.org" for kind in kinds]


@pytest.mark.parametrize("kinds", [
    pytest.param(("discard",), id="alone"),
    pytest.param(("discard", "ok"), id="first"),
    pytest.param(("ok", "discard"), id="later"),
])
async def test_a_message_an_access_table_discards_at_rcpt_fails(
    pool: asyncpg.Pool, postfix: tuple[PostfixInstance, int], kinds: tuple[str, ...],
) -> None:
    follower = MaillogFollower(pool, postfix[0].maillog, host=f"ra-{uuid.uuid4().hex[:6]}")
    await follower.poll()
    addresses = names(*kinds)
    message_id = await sent(pool, postfix, follower.host, *addresses)
    await follower.poll()
    await follower.release()
    assert await recipients(pool, message_id) == dict.fromkeys(
        addresses, ("failed", DISCARDED))
    assert await message_status(pool, message_id) == "failed"


@pytest.mark.parametrize("kinds", [
    pytest.param(("hold",), id="alone"),
    pytest.param(("hold", "ok"), id="first"),
    pytest.param(("ok", "hold"), id="later"),
])
async def test_a_message_an_access_table_holds_at_rcpt_is_held(
    pool: asyncpg.Pool, postfix: tuple[PostfixInstance, int], kinds: tuple[str, ...],
) -> None:
    follower = MaillogFollower(pool, postfix[0].maillog, host=f"rh-{uuid.uuid4().hex[:6]}")
    await follower.poll()
    message_id = await sent(pool, postfix, follower.host, *names(*kinds))
    await follower.poll()
    await follower.release()
    assert await held(pool, message_id) == ["held in Postfix's hold queue by its checks"]
    assert await message_status(pool, message_id) == "relayed"


SMTPD = "Dec  7 23:16:56 mx postfix/postwarden-send/smtpd[{pid}]: "
RCPT = ("RCPT from localhost[127.0.0.1]: <{kind}@example.org>: Recipient address triggers "
        "{upper} action; from=<app@example.com> to=<{kind}@example.org> proto=ESMTP "
        "helo=<relay.test>")


def noqueue(pid: int, kind: str) -> str:
    return SMTPD.format(pid=pid) + f"NOQUEUE: {kind}: " + RCPT.format(kind=kind,
                                                                      upper=kind.upper())


def opened(pid: int, queue_id: str) -> str:
    return SMTPD.format(pid=pid) + f"{queue_id}: client=localhost[127.0.0.1]"


def stops(*lines: str) -> list[tuple[str, str]]:
    """The stops read in ``lines``: each event's queue id and status."""
    reader, found = NoQueueStops(), []
    for text in lines:
        split = split_line(text)
        assert split is not None
        if (event := reader.read(split)[0]) is not None:
            found.append((event.queue_id, event.status))
    return found


def test_a_stop_is_the_queue_id_its_process_opens_next() -> None:
    """Other processes' lines come between (sessions in parallel); a DISCARD beats a
    HOLD before it, as in cleanup."""
    assert stops(noqueue(1, "discard"), opened(2, "Q2"), noqueue(3, "hold"),
                 opened(1, "Q1"), noqueue(3, "discard"), opened(3, "Q3"),
                 opened(2, "Q4")) == [("Q1", "discarded"), ("Q3", "discarded")]


@pytest.mark.parametrize("action", ["warn", "filter", "redirect"])
def test_an_action_that_leaves_the_recipient_accepted_leaves_the_stop(action: str) -> None:
    """HOLD lets the checks go on: a WARN after it logs its own NOQUEUE line."""
    assert stops(noqueue(1, "hold"), noqueue(1, action), opened(1, "Q1")) == [("Q1", "held")]


@pytest.mark.parametrize("between", [
    # HOLD lets the checks go on: the recipient refused after it, the client may RSET
    # and the next transaction open the file (the relay keeps its session).
    pytest.param(noqueue(1, "reject"), id="refused"),
    pytest.param(SMTPD.format(pid=1) + "NOQUEUE: milter-reject: " + RCPT.format(
        kind="hold", upper="HOLD"), id="refused-by-a-milter"),
    pytest.param(SMTPD.format(pid=1) + "disconnect from localhost[127.0.0.1] ehlo=1 "
                 "mail=1 rcpt=0/1 quit=1 commands=3/4", id="session-ended"),
])
def test_a_stop_not_followed_by_its_file_opening_is_dropped(between: str) -> None:
    assert stops(noqueue(1, "hold"), between, opened(1, "Q1")) == []


@pytest.mark.parametrize("kind", ["discard", "hold"])
def test_a_stop_before_the_queue_file_is_about_no_queue_id_named_noqueue(kind: str) -> None:
    """It waited, as a line about a queue id "NOQUEUE" that might be ours, asked of the
    database at every poll (on an MX discarding spam at RCPT, most lines of the log)."""
    assert delivery(noqueue(1, kind)) is None


async def test_a_hold_read_before_the_message_id_in_another_read_is_held(
    pool: asyncpg.Pool, postfix: tuple[PostfixInstance, int],
) -> None:
    """The hold, tied to the queue id at its first line, read in one poll, and the
    Message-ID line naming our message in the next: the hold was taken for a line
    about the message the id named before (none), and dropped."""
    instance, port = postfix
    follower = MaillogFollower(pool, instance.maillog, host=f"rs-{uuid.uuid4().hex[:6]}")
    await follower.poll()
    (address,) = names("hold")
    message_id = await accepted_message(pool, address)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("relay.test")
        smtp.mail("app@example.com")
        smtp.rcpt(address)
        arrived = await asyncio.to_thread(
            instance.wait_for_log,
            rf"NOQUEUE: hold: .*<{re.escape(address)}>.*\n.*smtpd\[\d+\]: (\w+): client=", 30)
        await follower.poll()  # the hold and the first line
        code, reply = smtp.data(f"From: app@example.com\r\nTo: {address}\r\nSubject: hi\r\n"
                                f"Message-ID: <{message_id.hex}@example.com>\r\n\r\nbody\r\n")
    assert code == 250 and arrived[1] in reply.decode(), reply
    await relay_as(pool, message_id, arrived[1], queue_host=follower.host)
    await asyncio.to_thread(instance.wait_for_log, rf"{arrived[1]}: message-id=", 30)
    await follower.poll()
    await follower.release()
    assert await held(pool, message_id) == ["held in Postfix's hold queue by its checks"]


async def test_a_message_held_at_rcpt_whose_answer_was_lost_is_not_sent_again(
    pool: asyncpg.Pool, postfix: tuple[PostfixInstance, int],
) -> None:
    """No line commits a message smtpd holds at RCPT (qmgr never reads the hold queue):
    its receipt stayed open, and past OPEN_RECEIPT_LIMIT, Postfix's queue not listed,
    the relay sent it again. The session's end, its DATA answered 250, commits it."""
    instance, port = postfix
    follower = MaillogFollower(pool, instance.maillog, host=f"rl-{uuid.uuid4().hex[:6]}")
    await follower.poll()  # its first poll starts at the end of the log
    task = asyncio.create_task(follower.run())
    try:
        (address,) = names("hold")
        message = await cut_off(pool, address)
        row = await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", message)
        await hang_up_after_the_dot(port, row["envelope_from"], address, row["content"])
        found = await asyncio.to_thread(
            instance.wait_for_log, rf"(\w+): message-id=<{message.hex}@(?s:.*?)"
            r"postwarden-send/smtpd\[\d+\]: disconnect from", 30)
        stored = await relayed_once_old(pool, follower, port, message)
    finally:
        await stop_task(task)
    assert (stored["status"], stored["queue_id"]) == ("relayed", found[1])


async def relayed_once_old(pool: asyncpg.Pool, follower: MaillogFollower, port: int,
                           message: uuid.UUID) -> asyncpg.Record:
    """The message's row once a relay worker took it up again, its open receipt made
    older than OPEN_RECEIPT_LIMIT (Postfix's queue not listed): read to the log's end
    first, as the follower's task reads on."""
    await follower.read_past(time.monotonic())
    await pool.execute("UPDATE relay_receipts SET seen_at = seen_at - $2::interval "
                       "WHERE message_id = $1", message, 2 * OPEN_RECEIPT_LIMIT)
    return await relayed(pool, port, follower, message)


def committed(*lines: str) -> list[str]:
    """The queue ids whose receipts ``lines`` commit."""
    reader, found = NoQueueStops(), []
    for text in lines:
        split = split_line(text)
        assert split is not None
        if (started := parse_receipt(split)) is not None:
            reader.started(started)
        for receipt in reader.read(split)[1]:
            assert receipt.committed
            found.append(receipt.queue_id)
    return found


def ended(pid: int, counts: str) -> str:
    return SMTPD.format(pid=pid) + f"disconnect from localhost[127.0.0.1] ehlo=1 {counts}"


@pytest.mark.parametrize(("lines", "expected"), [
    pytest.param([ended(1, "mail=1 rcpt=1 data=1 commands=4")], ["Q1"], id="answered"),
    # A hold told once the file is open names its queue id.
    pytest.param([SMTPD.format(pid=1) + "Q2: client=localhost[127.0.0.1]",
                  SMTPD.format(pid=1) + "Q2: hold: " + RCPT.format(kind="hold", upper="HOLD"),
                  ended(1, "mail=2 rcpt=2 data=2 commands=7")], ["Q1", "Q2"], id="later"),
    # Told again (the lines as a later recipient's hold would read): one commit (it was
    # two, and the reader failed).
    pytest.param([SMTPD.format(pid=1) + "Q1: hold: " + RCPT.format(kind="hold", upper="HOLD"),
                  ended(1, "mail=1 rcpt=2 data=1 commands=5")], ["Q1"], id="told-again"),
    pytest.param([ended(1, "mail=2 rcpt=2 bdat=2 quit=1 commands=7")], ["Q1"], id="bdat"),
    # A 250 that could not be written counts as refused: the file may be committed or not.
    pytest.param([ended(1, "mail=1 rcpt=1 data=0/1 commands=3/4")], [], id="refused"),
    pytest.param([ended(1, "mail=1 rcpt=1 rset=1 commands=4")], [], id="no-data"),
    pytest.param([ended(2, "mail=1 rcpt=1 data=1 commands=4")], [], id="other-process"),
    pytest.param([SMTPD.format(pid=1) + "connect from localhost[127.0.0.1]",
                  ended(1, "mail=1 rcpt=1 data=1 commands=4")], [], id="next-session"),
    # The file removed (RSET), and another message given its queue id.
    pytest.param([SMTPD.format(pid=5) + "Q1: client=localhost[127.0.0.1]",
                  ended(1, "mail=2 rcpt=2 data=1 rset=1 commands=6")], [], id="id-reused"),
])
def test_a_session_every_data_of_which_was_answered_commits_its_holds(
    lines: list[str], expected: list[str],
) -> None:
    assert committed(noqueue(1, "hold"), opened(1, "Q1"), *lines) == expected


def test_a_discard_commits_nothing() -> None:
    assert committed(noqueue(1, "discard"), opened(1, "Q1"),
                     ended(1, "mail=1 rcpt=1 data=1 commands=4")) == []


@pytest.mark.parametrize("read_first", [
    pytest.param(1, id="after-the-noqueue-line"),
    pytest.param(-1, id="before-the-session-s-end"),
])
async def test_a_hold_read_on_by_the_next_reader_is_held_and_committed(
    pool: asyncpg.Pool, postfix: tuple[PostfixInstance, int], tmp_path: Path, read_first: int,
) -> None:
    """The read position saved between smtpd's NOQUEUE line and its ``client=`` line,
    or its session's end (a real Postfix's lines, read by a reader that stops there and
    one that goes on): the next reader knew neither the stop nor the hold, and the
    message got no ``held`` event nor its receipt a commit."""
    instance, port = postfix
    (address,) = names("hold")
    message = await cut_off(pool, address)
    row = await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", message)
    result = await asyncio.to_thread(send_message, port, row["content"],
                                     row["envelope_from"], [address])
    assert result.accepted and result.queue_id is not None, result
    session = await asyncio.to_thread(
        instance.wait_for_log, rf".*NOQUEUE: hold: .*<{re.escape(address)}>.*\n"
        rf"(?s:.*?)postwarden-send/smtpd\[\d+\]: disconnect from .*\n", 30)
    lines = session[0].splitlines(keepends=True)
    path, follower = await follower_at_end(pool, tmp_path)
    append(path, *lines[:read_first])
    await follower.poll()
    await follower.release()
    restarted = MaillogFollower(pool, path)
    append(path, *lines[read_first:])
    await restarted.poll()
    assert await pool.fetchval("SELECT committed FROM relay_receipts WHERE message_id = $1",
                               message)
    await relay_as(pool, message, result.queue_id, queue_host=restarted.host)
    await restarted.poll()
    await restarted.release()
    assert await held(pool, message) == ["held in Postfix's hold queue by its checks"]


@pytest.mark.parametrize(("rset", "kind", "in_hold"), [
    pytest.param(False, "ok", True, id="one-transaction"),
    pytest.param(True, "ok", False, id="reset-between"),
    # The accepted recipient's DISCARD, tied at once, beats the hold: no held event.
    pytest.param(False, "discard", False, id="then-discarded"),
])
async def test_a_hold_whose_recipient_was_refused_holds_the_transaction(
    pool: asyncpg.Pool, postfix: tuple[PostfixInstance, int], rset: bool, kind: str,
    in_hold: bool,
) -> None:
    """smtpd keeps a HOLD for the transaction when the next check refuses the recipient
    it was told for: the message of a later accepted one went to the hold queue and
    stayed ``relayed`` with no ``held`` event. A RSET (which smtpd does not log) ends
    the transaction and its hold: only the session's end tells, by its counts."""
    instance, port = postfix
    follower = MaillogFollower(pool, instance.maillog, host=f"rr-{uuid.uuid4().hex[:6]}")
    await follower.poll()
    refused, accepted = names("hold-refused", kind)
    message = await accepted_message(pool, refused, accepted)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("relay.test")
        smtp.mail("app@example.com")
        assert smtp.rcpt(refused)[0] == 554
        if rset:
            smtp.rset()
            smtp.mail("app@example.com")
        assert smtp.rcpt(accepted)[0] == 250
        code, reply = smtp.data(f"From: app@example.com\r\nTo: {accepted}\r\nSubject: hi"
                                f"\r\nMessage-ID: <{message.hex}@example.com>\r\n\r\nbody\r\n")
    queue_id = reply.decode().rsplit(" ", 1)[-1]
    assert code == 250, reply
    await relay_as(pool, message, queue_id, queue_host=follower.host)
    await asyncio.to_thread(instance.wait_for_log, rf"{re.escape(refused)}(?s:.*?)"
                            r"postwarden-send/smtpd\[\d+\]: disconnect from", 30)
    await follower.poll()
    await follower.release()
    assert (queue_id in instance.held_queue_ids()) is in_hold  # as Postfix does it
    assert await held(pool, message) == (
        ["held in Postfix's hold queue by its checks"] if in_hold else [])


@pytest.mark.parametrize(("counts", "expected"), [
    pytest.param("mail=1 rcpt=1/2 data=1 quit=1 commands=5/6", [("Q1", "held")], id="one"),
    pytest.param("mail=1 rcpt=1/2 data=1", [("Q1", "held")], id="connection-lost"),
    pytest.param("mail=2 rcpt=1/2 data=1 rset=1 quit=1 commands=7/8", [], id="reset"),
    pytest.param("mail=2 rcpt=1/2 data=1 quit=1 commands=6/7", [], id="two-transactions"),
    pytest.param("mail=1/2 rcpt=1/2 data=1 quit=1 commands=6/7", [], id="mail-refused"),
])
def test_a_stop_a_refusal_left_unknown_is_told_by_the_session_s_end(
    counts: str, expected: list[tuple[str, str]],
) -> None:
    assert stops(noqueue(1, "hold"), noqueue(1, "reject"), opened(1, "Q1"),
                 ended(1, counts)) == expected


def test_a_hold_a_single_transaction_kept_is_committed_by_the_session_s_end() -> None:
    assert committed(noqueue(1, "hold"), noqueue(1, "reject"), opened(1, "Q1"),
                     ended(1, "mail=1 rcpt=1/2 data=1 quit=1 commands=5/6")) == ["Q1"]


def test_a_stop_tied_at_once_is_told_once() -> None:
    """The refused recipient's hold, then the next one's: one hold, one event."""
    assert stops(noqueue(1, "hold"), noqueue(1, "reject"), noqueue(2, "hold"),
                 SMTPD.format(pid=1) + "NOQUEUE: hold: " + RCPT.format(kind="hold",
                                                                       upper="HOLD"),
                 opened(1, "Q1"), ended(1, "mail=1 rcpt=2/3 data=1")) == [("Q1", "held")]
