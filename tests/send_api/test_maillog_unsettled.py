"""Lines that left a recipient ``relayed`` for good, silently.

``soft_bounce = yes`` makes Postfix log a refusal as ``status=SOFTBOUNCE`` (dsn 4.x.x,
the reply still the remote 5xx): it was dropped, and the recipient stayed relayed even
once the message expired (``status=expired`` settles the deferred recipients; one with
no line read stays relayed: it may have been delivered). A delivery line with any other
status, and a log emptied in place with no copy beside it, were passed over without a
word.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.send import maillog
from postwarden_admin_api.send.deliverylines import EXPIRED_DETAIL, UnknownStatus

from .test_maillog import (
    Watched,
    append,
    delivery,
    expired,
    follower_at_end,
    line,
    message_status,
    new_queue_id,
    recipients,
    relayed_message,
    removed,
    sent,
    timeline,
    watched,
)

# As Postfix 3.7 logs them with soft_bounce = yes (the review's run).
SOFT_REPLY = "host 127.0.0.1[127.0.0.1] said: 550 5.1.1 no such user (in reply to RCPT TO command)"
SOFTBOUNCE = ("Dec 06 04:46:00 mx postfix/smtp[20946]: {queue_id}: to=<{to}>, "
              "relay=127.0.0.1[127.0.0.1]:30845, delay=0.05, delays=0.01/0.02/0.01/0.01, "
              f"dsn=4.1.1, status=SOFTBOUNCE ({SOFT_REPLY})\n")
# An address verification probe's result: Postfix's own message, no delivery.
PROBE = ("Dec 06 04:46:00 mx postfix/smtp[20946]: 4jht3D1wytzMYxr: to=<who@example.org>, "
         "relay=mx.example.org[192.0.2.1]:25, delay=0.05, delays=0/0/0/0, dsn=2.1.5, "
         "status=deliverable (250 2.1.5 ok)")


async def suppressed(pool: asyncpg.Pool, address: str) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM suppressions WHERE address = $1",
                                     address)
    return count


def test_a_soft_bounce_is_read_as_deferred_with_its_reply() -> None:
    event = delivery(SOFTBOUNCE.format(queue_id="4jht3D1wytzMYxr", to="sb@example.org"))
    assert event is not None and not isinstance(event, UnknownStatus)
    assert (event.queue_id, event.recipient, event.status, event.dsn, event.reply) == (
        "4jht3D1wytzMYxr", "sb@example.org", "deferred", "4.1.1", SOFT_REPLY)
    assert not event.hard_bounce  # retried by Postfix: never suppressed


async def test_a_soft_bounce_defers_its_recipient_until_the_message_expires(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("SOFT")
    gone = f"sb-{uuid.uuid4().hex[:6]}@example.org"
    message_id = await relayed_message(pool, queue_id, gone)
    append(log_file, SOFTBOUNCE.format(queue_id=queue_id, to=gone))
    await follower.poll()
    assert await recipients(pool, message_id) == {gone: ("deferred", SOFT_REPLY)}
    assert await message_status(pool, message_id) == "relayed"
    append(log_file, SOFTBOUNCE.format(queue_id=queue_id, to=gone), expired(queue_id),
           removed(queue_id))
    await follower.poll()
    assert await recipients(pool, message_id) == {
        gone: ("bounced", f"{EXPIRED_DETAIL} (last: {SOFT_REPLY})")}
    assert await message_status(pool, message_id) == "failed"
    assert await timeline(pool, message_id) == ["deferred", "deferred", "bounced"]
    assert await suppressed(pool, gone) == 0


async def test_an_expired_message_leaves_a_recipient_without_a_line_relayed(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Postfix returns to the sender only the recipients it did not deliver, and a
    recipient with no line read may have been delivered (its line lost, or another
    message's, under a reused queue id, not read yet): its result is not guessed."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("EXPR")
    tag = uuid.uuid4().hex[:6]
    ok, later, lost = (f"{name}-{tag}@example.org" for name in ("ok", "later", "lost"))
    message_id = await relayed_message(pool, queue_id, ok, later, lost)
    append(log_file, sent(queue_id, ok), line(queue_id, later, "deferred", "4.2.0", "450 busy"),
           expired(queue_id), removed(queue_id))
    await follower.poll()
    statuses = {address: status for address, (status, _) in
                (await recipients(pool, message_id)).items()}
    assert statuses == {ok: "delivered", later: "bounced", lost: "relayed"}
    assert await message_status(pool, message_id) == "relayed"


def test_a_delivery_line_with_an_unknown_status_is_told_apart() -> None:
    event = delivery("Dec 06 04:46:00 mx postfix/smtp[7]: 4jhtQ1: to=<a@example.org>, "
                     "relay=x, delay=0, delays=0/0/0/0, dsn=4.0.0, status=PARKED (later)")
    assert event == UnknownStatus("4jhtQ1", "PARKED")
    assert delivery(PROBE) is None


def unknown(queue_id: str, recipient: str, status: str) -> str:
    return line(queue_id, recipient, status, "4.0.0", "secret reply text")


def counted(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("postwarden_maillog_unknown_status_lines_total")


async def test_a_delivery_line_with_an_unknown_status_is_warned_of_once_and_counted(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    log_file, follower = await follower_at_end(pool, tmp_path, metrics=metrics)
    queue_id = new_queue_id("UNK")
    who = f"unk-{uuid.uuid4().hex[:6]}@example.org"
    message_id = await relayed_message(pool, queue_id, who)
    caplog.set_level(logging.WARNING)
    append(log_file, unknown(queue_id, who, "PARKED"), unknown(queue_id, who, "PARKED"),
           PROBE + "\n")
    await follower.poll()
    append(log_file, unknown(queue_id, who, "PARKED"), unknown(queue_id, who, "stashed"))
    await follower.poll()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert queue_id in warnings[0] and "status=PARKED" in warnings[0]
    assert "status=stashed" in warnings[1]
    assert not any(who in text or "secret" in text for text in warnings)
    assert counted(metrics) == 4  # not the probe's
    assert await recipients(pool, message_id) == {who: ("relayed", None)}


async def test_unknown_statuses_named_are_bounded(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lines others wrote to the log cannot flood the service's own."""
    monkeypatch.setattr(maillog, "MAX_UNKNOWN_NAMED", 2)
    metrics = Metrics()
    log_file, follower = await follower_at_end(pool, tmp_path, metrics=metrics)
    caplog.set_level(logging.WARNING)
    append(log_file, *(unknown(new_queue_id("UNK"), "a@example.org", f"made-up{n}")
                       for n in range(5)))
    await follower.poll()
    assert len([r for r in caplog.records if "status=made-up" in r.getMessage()]) == 2
    assert counted(metrics) == 5


async def read_some(pool: asyncpg.Pool, tmp_path: Path,
                    caplog: pytest.LogCaptureFixture) -> Watched:
    """A follower that has read a few lines of a log, warnings captured from then on."""
    w = await watched(pool, tmp_path)
    append(w.log_file, "Nov 23 23:59:58 mx postfix/qmgr[2]: X: removed\n" * 5)
    await w.follower.poll()
    caplog.set_level(logging.WARNING)
    return w


async def test_a_log_emptied_in_place_without_a_copy_warns_once_that_lines_may_be_lost(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = await read_some(pool, tmp_path, caplog)
    append(w.log_file, "Nov 23 23:59:59 mx postfix/qmgr[2]: LOSTLINE: removed\n")
    with w.log_file.open("r+") as out:  # truncate -s 0, or a copy compressed at once
        out.truncate(0)
    append(w.log_file, sent(w.queue_id, w.recipient))
    await w.follower.poll()
    append(w.log_file, "Nov 24 00:00:01 mx postfix/qmgr[2]: Y: removed\n")
    await w.follower.poll()
    assert await message_status(pool, w.message_id) == "delivered"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "emptied in place" in warnings[0] and "may have been lost" in warnings[0]
    assert "LOSTLINE" not in warnings[0] and w.recipient not in warnings[0]


async def test_a_log_emptied_in_place_with_its_copy_beside_it_warns_of_nothing(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = await read_some(pool, tmp_path, caplog)
    append(w.log_file, sent(w.queue_id, w.recipient))
    (tmp_path / "maillog.1").write_bytes(w.log_file.read_bytes())  # copytruncate
    with w.log_file.open("r+") as out:
        out.truncate(0)
    await w.follower.poll()
    await w.follower.poll()
    assert await message_status(pool, w.message_id) == "delivered"
    assert "may have been lost" not in caplog.text
