"""A service down while Postfix logged on catches up on the lines it missed. A message
it relays as it comes back may get the short queue id of an earlier one whose last
lines are still ahead of the reader (``enable_long_queue_ids = no``): those lines were
applied to the message relayed last under the id, ours. A message's lines all follow
its arrival (cleanup names our Message-ID before Postfix answers the relay): those
read before it are another's."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send import maillog
from postwarden_admin_api.send.maillog import MaillogFollower

from .test_maillog import (
    about_message,
    accepted_message,
    append,
    follower_at_end,
    line,
    new_queue_id,
    recipients,
    relay_as,
    relayed_message,
    removed,
    sent,
)
from .test_maillog_requeue import requeued


def arrival(queue_id: str, message: uuid.UUID) -> str:
    return (about_message(queue_id, "smtpd", "client=localhost[127.0.0.1]")
            + about_message(queue_id, "cleanup", f"message-id=<{message.hex}@example.com>")
            + about_message(queue_id, "qmgr", "from=<app@example.com>, size=640, nrcpt=1 "
                                              "(queue active)"))


async def caught_up(follower: MaillogFollower, log_file: Path, read: int) -> None:
    """Poll until the follower, reading ``read`` bytes a poll, read the whole log."""
    size = (await asyncio.to_thread(log_file.stat)).st_size
    for _ in range(size // read + 2):
        await follower.poll()


async def test_a_catch_up_gives_no_earlier_line_under_the_queue_id_to_ours(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("C")  # short: hexadecimal
    address = f"again-{uuid.uuid4().hex[:6]}@example.org"
    before = await relayed_message(pool, queue_id, address)
    await follower.poll()
    await follower.release()  # the service stops; Postfix logs on
    earlier = line(queue_id, address, "bounced", "5.1.1",
                   "host mx.example.org[192.0.2.7] said: 550 5.1.1 User unknown (in "
                   "reply to RCPT TO command)") + removed(queue_id)
    ours = await accepted_message(pool, address)
    append(log_file, earlier, arrival(queue_id, ours))
    await relay_as(pool, ours, queue_id)  # back: Postfix gave ours the id again
    append(log_file, sent(queue_id, address))
    monkeypatch.setattr(maillog, "MAX_READ", len(earlier))  # the earlier lines first
    await caught_up(MaillogFollower(pool, log_file), log_file, len(earlier))
    assert await recipients(pool, ours) == {address: ("delivered", "250 ok")}
    # The earlier message's own lines, read before ours' arrival, are its.
    assert [status for status, _ in (await recipients(pool, before)).values()] == ["bounced"]


async def test_an_earlier_message_s_last_lines_read_with_our_arrival_are_its(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """In one read: the earlier message's last lines, then ours' arrival under its queue id
    (Postfix reused it at once), the relay yet to store ours."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("B")
    before = await relayed_message(pool, queue_id, "first@example.org")
    await follower.poll()  # past its arrival
    ours = await accepted_message(pool, "second@example.org")
    append(log_file, sent(queue_id, "first@example.org"), removed(queue_id),
           arrival(queue_id, ours))
    await follower.poll()
    assert await recipients(pool, before) == {"first@example.org": ("delivered", "250 ok")}
    await relay_as(pool, ours, queue_id)
    append(log_file, sent(queue_id, "second@example.org"))
    await follower.poll()
    assert await recipients(pool, ours) == {"second@example.org": ("delivered", "250 ok")}


async def test_lines_of_ours_whose_arrival_was_lost_are_applied_once_caught_up(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its arrival rotated away unread: held while the catch-up may still reach it."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    await follower.release()
    queue_id = new_queue_id("D")
    address = f"lost-{uuid.uuid4().hex[:6]}@example.org"
    ours = await relayed_message(pool, queue_id, address)
    delivered = sent(queue_id, address)
    append(log_file, delivered, about_message("AAAA1", "qmgr", "removed") * 3)
    monkeypatch.setattr(maillog, "MAX_READ", len(delivered))
    restarted = MaillogFollower(pool, log_file)
    await restarted.poll()
    assert await recipients(pool, ours) == {address: ("relayed", None)}
    await caught_up(restarted, log_file, len(delivered))
    assert await recipients(pool, ours) == {address: ("delivered", "250 ok")}


@pytest.mark.parametrize("one_read", [False, True])
async def test_a_catch_up_gives_an_earlier_requeue_under_the_queue_id_to_that_message(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_read: bool
) -> None:
    """postsuper -r while the service was down: pickup's line ties the earlier message's
    new queue id to the one ours was given since. It moved ours to the new id, whose
    lines were then ours, and ours' own lines went to the earlier message; so it did
    read with ours' arrival (``one_read``)."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id, new = new_queue_id("E"), new_queue_id("F")
    address = f"requeued-{uuid.uuid4().hex[:6]}@example.org"
    earlier = await relayed_message(pool, queue_id, address)
    await follower.poll()
    await follower.release()
    moved = requeued(queue_id, new)
    ours = await accepted_message(pool, address)
    append(log_file, moved, arrival(queue_id, ours))
    await relay_as(pool, ours, queue_id)
    append(log_file, line(queue_id, address, "deferred", "4.2.0", "451 later"),
           sent(new, address))
    read = len(moved) if not one_read else maillog.MAX_READ
    monkeypatch.setattr(maillog, "MAX_READ", read)
    await caught_up(MaillogFollower(pool, log_file), log_file, read)
    assert await recipients(pool, ours) == {address: ("deferred", "451 later")}
    assert await recipients(pool, earlier) == {address: ("delivered", "250 ok")}


@pytest.mark.parametrize("restart", [False, True])
async def test_a_requeue_of_ours_read_before_its_arrival_is_known_lost_is_its(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restart: bool
) -> None:
    """Its arrival rotated away unread, ours was requeued (postsuper -r): pickup's line,
    read while the catch-up may still reach the arrival, waits as lines do (across a
    ``restart`` of the service too); once the log is read to its end, it is ours."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    await follower.release()
    queue_id, new = new_queue_id("A"), new_queue_id("B")
    address = f"lost-requeued-{uuid.uuid4().hex[:6]}@example.org"
    ours = await relayed_message(pool, queue_id, address)
    moved = requeued(queue_id, new)
    append(log_file, moved, sent(new, address), about_message("AAAA1", "qmgr", "removed") * 3)
    monkeypatch.setattr(maillog, "MAX_READ", len(moved))
    reader = MaillogFollower(pool, log_file)
    await reader.poll()
    assert await recipients(pool, ours) == {address: ("relayed", None)}
    if restart:
        await reader.release()
        reader = MaillogFollower(pool, log_file)
    await caught_up(reader, log_file, len(moved))
    assert await recipients(pool, ours) == {address: ("delivered", "250 ok")}


def other_arrival(queue_id: str) -> str:
    return (about_message(queue_id, "smtpd", "client=localhost[127.0.0.1]")
            + about_message(queue_id, "cleanup", "message-id=<other@example.net>"))


@pytest.mark.parametrize("next_ours", [False, True])
async def test_lines_read_between_two_arrivals_under_a_queue_id_are_the_first_s(
    pool: asyncpg.Pool, tmp_path: Path, next_ours: bool
) -> None:
    """In one read: ours' arrival, its lines, then another arrival under its queue id
    (Postfix reused it), of other mail or ``next_ours``, and that message's lines. The
    lines between were dropped: ours stayed relayed for good."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("A")
    address = f"between-{uuid.uuid4().hex[:6]}@example.org"
    first = await relayed_message(pool, queue_id, address)
    nxt = await accepted_message(pool, address)
    append(log_file, arrival(queue_id, first),
           line(queue_id, address, "bounced", "5.7.1", "550 5.7.1 refused"), removed(queue_id),
           arrival(queue_id, nxt) if next_ours else other_arrival(queue_id),
           sent(queue_id, address))
    if next_ours:
        await relay_as(pool, nxt, queue_id)
    await follower.poll()
    assert await recipients(pool, first) == {address: ("bounced", "550 5.7.1 refused")}
    assert await recipients(pool, nxt) == {
        address: ("delivered", "250 ok") if next_ours else ("queued", None)}


async def test_lines_read_between_two_arrivals_are_kept_by_a_poll_that_fails(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database lost as the poll noted the arrivals: the next poll applies what it
    read. Those lines were taken up only past that point, and were lost: ours stayed
    relayed for good."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("F")
    address = f"between-failed-{uuid.uuid4().hex[:6]}@example.org"
    first = await relayed_message(pool, queue_id, address)
    append(log_file, arrival(queue_id, first), sent(queue_id, address), removed(queue_id),
           other_arrival(queue_id))
    noted = maillog.note_arrivals

    async def lost_once(*args: object) -> None:
        monkeypatch.setattr(maillog, "note_arrivals", noted)
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(maillog, "note_arrivals", lost_once)
    with pytest.raises(ConnectionResetError):
        await follower.poll()
    await follower.poll()
    assert await recipients(pool, first) == {address: ("delivered", "250 ok")}


async def test_a_requeue_read_between_two_arrivals_under_a_queue_id_is_the_first_s(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """In one read: ours' arrival, its requeue (postsuper -r), other mail's arrival under
    its old queue id, ours' line under the new one. The requeue was dropped: ours stayed
    under its old queue id, relayed for good."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id, new = new_queue_id("C"), new_queue_id("D")
    address = f"between-requeued-{uuid.uuid4().hex[:6]}@example.org"
    ours = await relayed_message(pool, queue_id, address)
    append(log_file, arrival(queue_id, ours), requeued(queue_id, new), other_arrival(queue_id),
           sent(new, address))
    await follower.poll()
    assert await recipients(pool, ours) == {address: ("delivered", "250 ok")}
