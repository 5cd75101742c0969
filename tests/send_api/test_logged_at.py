"""When a line of Postfix's log says it was logged (syslogline.logged_at): the time a
timeline event shows as `logged_at`, whenever the service reads the line."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send.deliverylines import DeliveryEvent
from postwarden_admin_api.send.syslogline import logged_at
from postwarden_admin_api.send.waitinglines import restored, saved_form
from tests.send_api.test_maillog import (
    append,
    follower_at_end,
    new_queue_id,
    relayed_message,
    sent,
)

LINE = " mx postfix/smtp[7]: 4Wq1Zk3sZnz9vBQ: to=<a@example.org>, status=sent (250 ok)"


@pytest.fixture
def zone() -> Iterator[None]:
    """This process in a zone with daylight saving time, some hours off UTC."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def at(*fields: int, zone: dt.tzinfo | None = None) -> float:
    """A moment (year, month, day, hours...); without ``zone``, in this process's local
    time."""
    return dt.datetime(*fields, tzinfo=zone).timestamp()  # type: ignore[arg-type, misc]


@pytest.mark.usefixtures("zone")
@pytest.mark.parametrize("stamp", ["Dec 06 10:44:12", "Dec  6 10:44:12"])
def test_a_stamp_without_year_or_zone_is_local_time_this_year(stamp: str) -> None:
    """Postfix's maillog_file pads the day with a zero, syslog with a space."""
    read = at(2026, 12, 6, 15)
    assert logged_at(stamp + LINE, read) == at(2026, 12, 6, 10, 44, 12)
    # In New York in December: five hours behind UTC.
    assert logged_at(stamp + LINE, read) == at(2026, 12, 6, 15, 44, 12, zone=dt.UTC)


@pytest.mark.usefixtures("zone")
def test_local_time_follows_daylight_saving() -> None:
    assert logged_at("Jul 01 10:00:00" + LINE, at(2026, 7, 2)) \
        == at(2026, 7, 1, 14, 0, 0, zone=dt.UTC)


def test_microseconds_are_kept() -> None:
    logged = logged_at("Dec  6 10:44:12.250000" + LINE, at(2026, 12, 6, 15))
    assert logged == at(2026, 12, 6, 10, 44, 12) + 0.25


@pytest.mark.parametrize(("stamp", "expected"), [
    ("2026-12-06T10:44:12.123456+00:00", at(2026, 12, 6, 10, 44, 12, zone=dt.UTC) + 0.123456),
    ("2026-12-06T10:44:12Z", at(2026, 12, 6, 10, 44, 12, zone=dt.UTC)),
    ("2026-12-06T11:44:12+01:00", at(2026, 12, 6, 10, 44, 12, zone=dt.UTC)),
    # journalctl -o short-iso before systemd 255: no colon in the offset.
    ("2026-12-06T11:44:12+0100", at(2026, 12, 6, 10, 44, 12, zone=dt.UTC)),
])
def test_rfc3339_stamps_carry_their_own_zone(stamp: str, expected: float) -> None:
    assert logged_at(stamp + LINE, at(2027, 3, 1)) == pytest.approx(expected, abs=1e-6)


def test_a_line_from_december_read_in_january_is_last_years() -> None:
    assert logged_at("Dec 31 23:59:59" + LINE, at(2027, 1, 1, 0, 1)) \
        == at(2026, 12, 31, 23, 59, 59)


def test_a_stamp_a_little_ahead_of_the_reader_is_this_years() -> None:
    """Clocks a little apart (the reader's behind the writer's) move no line a year."""
    assert logged_at("Dec 06 12:00:05" + LINE, at(2026, 12, 6, 12, 0, 0)) \
        == at(2026, 12, 6, 12, 0, 5)


def test_a_stamp_just_past_new_year_read_just_before_it_is_next_years() -> None:
    """The writer's clock a second ahead of the reader's, across New Year."""
    assert logged_at("Jan 01 00:00:01" + LINE, at(2026, 12, 31, 23, 59, 59)) \
        == at(2027, 1, 1, 0, 0, 1)


@pytest.mark.usefixtures("zone")
def test_in_the_repeated_hour_the_later_reading_not_past_the_reading_is_taken() -> None:
    """New York's clocks go back at 2:00 on November 1st, 2026: 1:30 comes twice, at
    5:30 and 6:30 UTC."""
    line = "Nov 01 01:30:00" + LINE
    assert logged_at(line, at(2026, 11, 1, 6, 31, zone=dt.UTC)) \
        == at(2026, 11, 1, 6, 30, zone=dt.UTC)
    assert logged_at(line, at(2026, 11, 1, 5, 31, zone=dt.UTC)) \
        == at(2026, 11, 1, 5, 30, zone=dt.UTC)


def test_february_29th_is_the_last_leap_years() -> None:
    assert logged_at("Feb 29 08:00:00" + LINE, at(2026, 3, 1)) == at(2024, 2, 29, 8)


@pytest.mark.parametrize("line", [
    "Foo 06 10:44:12" + LINE,  # no month
    "Dec 32 10:44:12" + LINE,  # no such day
    "Dec 6 10:44:12" + LINE,  # syslog pads a day to two places
    "Dec 06 25:44:12" + LINE,
    "Dec 06 10:44" + LINE,
    "2026-12-06 10:44:12" + LINE,  # no T, no zone
    "2026-12-06T10:44:12" + LINE,  # no zone
    "2026-13-06T10:44:12Z" + LINE,  # no such month
    "2026-12-06T24:44:12+00:00" + LINE,
    # Out of the range the database and the webhooks take, or later than the reading.
    "9999-12-31T23:30:00-01:00" + LINE,
    "0001-01-01T00:30:00+01:00" + LINE,
    "1969-12-31T23:59:59Z" + LINE,
    "2026-12-08T00:00:00Z" + LINE,
    "mx postfix/smtp[7]: 4Wq1Zk3sZnz9vBQ: to=<a@example.org>, status=sent",
    "",
])
def test_a_stamp_not_read_is_none(line: str) -> None:
    assert logged_at(line, at(2026, 12, 6)) is None


# --- applied: the follower keeps each line's time with its event --------------------


def stamped(logged: float, text: str) -> str:
    """Postfix's line ``text`` (from its program on) as maillog_file writes it at
    ``logged``, in this host's local time."""
    return time.strftime("%b %d %H:%M:%S", time.localtime(logged)) + " mx " + text


async def logged_events(pool: asyncpg.Pool, message_id: uuid.UUID
                        ) -> list[tuple[str, float | None, float]]:
    """Each event from the log: its name, when its line was logged, and when it was
    recorded (seconds since the epoch)."""
    rows = await pool.fetch(
        "SELECT event, logged_at, time FROM outbound_events WHERE message_id = $1 "
        "AND event NOT IN ('accepted', 'relayed') ORDER BY id", message_id)
    return [(row["event"], row["logged_at"] and row["logged_at"].timestamp(),
             row["time"].timestamp()) for row in rows]


async def test_events_from_lines_read_late_keep_when_postfix_logged_them(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Lines read an hour after Postfix wrote them (the service was stopped): each
    event is recorded now, and says when its line was logged, recipient lines and
    lines about the whole message alike."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    delivered_id, held_id = new_queue_id("LATE"), new_queue_id("HELD")
    delivered = await relayed_message(pool, delivered_id, "a@example.org")
    held = await relayed_message(pool, held_id, "b@example.org")
    hour_ago = float(int(time.time()) - 3600)
    append(log_file,
           stamped(hour_ago, f"postfix/smtp[7]: {delivered_id}: to=<a@example.org>, "
                             "relay=x, delay=0, delays=0/0/0/0, dsn=4.4.1, status=deferred "
                             "(connection refused)\n"),
           stamped(hour_ago + 60, f"postfix/smtp[7]: {delivered_id}: to=<a@example.org>, "
                                  "relay=x, delay=60, delays=0/0/0/0, dsn=2.0.0, "
                                  "status=sent (250 ok)\n"),
           stamped(hour_ago + 5, f"postfix/cleanup[9]: {held_id}: milter-hold: END-OF-MESSAGE "
                                 "from localhost[127.0.0.1]: milter triggers HOLD action; "
                                 "from=<app@example.com> "
                                 "to=<b@example.org> proto=ESMTP helo=<x>\n"))
    read = time.time()
    await follower.poll()
    assert [(e, logged) for e, logged, _ in await logged_events(pool, delivered)] \
        == [("deferred", hour_ago), ("delivered", hour_ago + 60)]
    assert [(e, logged) for e, logged, _ in await logged_events(pool, held)] \
        == [("held", hour_ago + 5)]
    for _, _, recorded in await logged_events(pool, delivered):
        assert recorded >= read - 1


async def test_a_line_whose_stamp_cannot_be_read_is_applied_without_one(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("NOSTAMP")
    message_id = await relayed_message(pool, queue_id, "c@example.org")
    append(log_file, "Dec 32 " + sent(queue_id, "c@example.org")[len("Nov 23 "):])
    await follower.poll()
    assert [(e, logged) for e, logged, _ in await logged_events(pool, message_id)] \
        == [("delivered", None)]


async def test_a_call_of_the_previous_version_still_applies_its_lines(
    pool: asyncpg.Pool
) -> None:
    """During an upgrade an instance of the previous version calls maillog_apply with
    seven arguments: its lines apply, with no logged_at."""
    queue_id = new_queue_id("OLDCALL")
    message_id = await relayed_message(pool, queue_id, "d@example.org")
    applied = await pool.fetch(
        "SELECT maillog_apply($1, $2, $3, $4, $5, $6, $7) AS line", socket.gethostname(),
        [queue_id], ["d@example.org"], ["delivered"], ["250 ok"], [False], [False])
    assert [row["line"] for row in applied] == [1]
    assert [(e, logged) for e, logged, _ in await logged_events(pool, message_id)] \
        == [("delivered", None)]


def test_waiting_lines_are_saved_as_an_earlier_version_reads_them() -> None:
    """Lines waiting for their queue id are saved as JSON with the read position, and
    read back by the next reader, which may be an instance of the previous version: it
    passes every key to its DeliveryEvent, which has no logged_at (the line goes
    without). Lines a later version saved with a field of its own are read too."""
    event = DeliveryEvent("Q1", "a@example.org", "delivered", "2.0.0", "250 ok",
                          logged_at=1765017852.25)
    saved = json.loads(json.dumps(saved_form([(1.5, event)])))
    previous = {"seen": 1.5, "queue_id": "Q1", "recipient": "a@example.org",
                "status": "delivered", "dsn": "2.0.0", "reply": "250 ok", "rewritten": False}
    assert saved == [previous]
    without = dataclasses.replace(event, logged_at=None)
    assert restored(saved) == [(1.5, without)]
    assert restored([{**previous, "logged_at": 1.0, "later_field": "x"}]) == [
        (1.5, dataclasses.replace(event, logged_at=1.0))]
