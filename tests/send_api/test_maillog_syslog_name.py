"""Several Postfix instances (``postmulti``: ``postfix`` relaying our mail,
``postfix-in`` taking inbound mail, say) logging to one syslog file: each has a queue
of its own, so the same queue id names a message of each (short ids are reused within
one queue; across queues nothing keeps them apart). Every instance's lines were read as
the relay's Postfix's: another instance's bounce marked our recipient bounced and
suppressed it. ``maillog_syslog_name`` names the relay's instance; only its lines are
read, a service's own ``-o syslog_name=postfix/postwarden-send`` among them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send.deliverylines import DeliveryEvent
from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.syslogline import split_line
from postwarden_admin_api.send.waitinglines import saved_form
from postwarden_admin_api.settings import SettingsError, load_settings
from tests.fixtures.postfix import running_postfix

from .test_maillog import (
    accepted_message,
    append,
    message_status,
    new_queue_id,
    recipients,
    relay_as,
    timeline,
)
from .test_maillog_reused_queue_id import queued


def bounced(instance: str, queue_id: str, address: str) -> str:
    return (f"Dec  7 01:09:35 mx {instance}/smtp[12965]: {queue_id}: to=<{address}>, "
            "relay=mx.example.org[192.0.2.7]:25, delay=1.2, delays=0.1/0/0.5/0.6, "
            "dsn=5.1.1, status=bounced (host mx.example.org[192.0.2.7] said: 550 5.1.1 "
            "User unknown (in reply to RCPT TO command))\n")


async def test_only_the_relays_postfix_instances_lines_are_read(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file = tmp_path / "mail.log"
    log_file.write_text("")
    follower = MaillogFollower(pool, log_file, syslog_name="postfix")
    await follower.poll()
    queue_id = new_queue_id("M")
    address = f"multi-{uuid.uuid4().hex[:6]}@example.org"
    ours = await accepted_message(pool, address)
    await relay_as(pool, ours, queue_id)
    append(log_file, bounced("postfix-in", queue_id, address))
    await follower.poll()
    assert await recipients(pool, ours) == {address: ("relayed", None)}
    assert await pool.fetchval("SELECT count(*) FROM suppressions WHERE address = $1",
                               address) == 0
    append(log_file, bounced("postfix", queue_id, address))
    await follower.poll()
    assert await message_status(pool, ours) == "failed"


@pytest.mark.parametrize(("program", "read"), [
    ("postfix/smtp", True), ("postfix/postwarden-send/smtpd", True),
    ("postfix-in/smtp", False), ("postfixx/smtp", False), ("postfix", False)])
def test_a_line_is_the_instances_by_its_programs_prefix(program: str, read: bool) -> None:
    line = split_line(f"Dec  7 01:09:35 mx {program}[7]: ABC123: removed")
    assert line is not None and line.written_by("postfix") is read
    assert line.written_by(None)


@pytest.mark.parametrize("name", ["postfix-out", "postfix/postwarden-send"])
def test_a_syslog_name_is_taken(name: str) -> None:
    settings = load_settings(None, {"POSTWARDEN_DATABASE_URL": "postgresql:///x",
                                    "POSTWARDEN_MAILLOG_SYSLOG_NAME": name})
    assert settings.maillog_syslog_name == name


@pytest.mark.parametrize("name", ["postfix/", "postfix[1]", "post fix", "postfix:"])
def test_a_syslog_name_no_program_could_start_with_is_refused(name: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, {"POSTWARDEN_DATABASE_URL": "postgresql:///x",
                             "POSTWARDEN_MAILLOG_SYSLOG_NAME": name})
    assert info.value.problems == ["POSTWARDEN_MAILLOG_SYSLOG_NAME: maillog_syslog_name: "
                                   "expected a name such as postfix or postfix-out"]


def sent_by(instance: str, queue_id: str, address: str) -> str:
    return (f"Dec  7 01:09:35 mx {instance}/smtp[12966]: {queue_id}: to=<{address}>, "
            "relay=mx.example.org[192.0.2.7]:25, delay=1.2, delays=0.1/0/0.5/0.6, "
            "dsn=2.0.0, status=sent (250 2.0.0 Ok)\n")


async def test_the_services_of_two_instances_each_read_their_lines_of_one_log(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """One host, two Postfix instances logging to one syslog file, each relaying the
    mail of its own services (``maillog_syslog_name`` set apart, ``maillog_host``
    not): they shared one read position and its lease, so only one of them read the
    log, and the other's mail was never tracked."""
    log_file = tmp_path / "mail.log"
    log_file.write_text("")
    followers = {name: MaillogFollower(pool, log_file, syslog_name=name)
                 for name in ("postfix", "postfix-out")}
    messages = {}
    for name, follower in followers.items():
        await follower.poll()
        queue_id = new_queue_id("I")
        address = f"{name}-{uuid.uuid4().hex[:6]}@example.org"
        messages[name] = await accepted_message(pool, address)
        await relay_as(pool, messages[name], queue_id)
        append(log_file, sent_by(name, queue_id, address))
    for follower in followers.values():
        await follower.poll()
    assert all(follower.leading for follower in followers.values())
    assert [await message_status(pool, m) for m in messages.values()] == ["delivered"] * 2


async def _earlier_versions_position(pool: asyncpg.Pool, tmp_path: Path, host: str
                                     ) -> tuple[Path, MaillogFollower]:
    """An empty log, and the read position an earlier version kept for it by host and
    path alone (no syslog name), as its follower left it."""
    log_file = tmp_path / "mail.log"
    log_file.write_text("")
    before = MaillogFollower(pool, log_file, host=host)
    await before.poll()
    await before.release()
    return log_file, before


async def _relayed(pool: asyncpg.Pool, prefix: str) -> tuple[str, str, uuid.UUID]:
    """A message of ours to a new address, relayed under a new queue id."""
    queue_id = new_queue_id(prefix)
    address = f"upgrade-{uuid.uuid4().hex[:6]}@example.org"
    ours = await accepted_message(pool, address)
    await relay_as(pool, ours, queue_id)
    return queue_id, address, ours


async def test_an_upgrade_goes_on_where_the_log_was_read_for_the_instance(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The read position an earlier version kept by host and path alone."""
    log_file, _ = await _earlier_versions_position(pool, tmp_path, "upgraded")
    queue_id, address, ours = await _relayed(pool, "U")
    append(log_file, sent_by("postfix", queue_id, address))  # while none runs
    await MaillogFollower(pool, log_file, host="upgraded", syslog_name="postfix").poll()
    assert await message_status(pool, ours) == "delivered"


@pytest.mark.postfix
@pytest.mark.parametrize(("syslog_name", "read"), [("postfix-out", True), ("postfix", False)])
async def test_real_postfix_an_instances_syslog_name_tells_its_lines(
    pool: asyncpg.Pool, syslog_name: str, read: bool
) -> None:
    """A second instance (``postmulti``'s ``postfix-out``) logs ``postfix-out/smtp[..]``."""
    address = f"out-{uuid.uuid4().hex[:6]}@example.net"
    with running_postfix(main={"syslog_name": "postfix-out"}) as (postfix, _):
        follower = MaillogFollower(pool, postfix.maillog, syslog_name=syslog_name)
        await follower.poll()
        ours = await accepted_message(pool, address)
        queue_id = await queued(postfix, f"{ours.hex}@example.com", address)
        await relay_as(pool, ours, queue_id)
        assert "postfix-out/smtp[" in postfix.log()
        await follower.poll()
    assert await message_status(pool, ours) == ("delivered" if read else "relayed")


async def test_an_upgrade_hands_the_lines_left_waiting_to_one_instances_services(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The services of two instances both took over the earlier version's row, and
    each applied the lines it left waiting: their timeline events twice."""
    log_file, before = await _earlier_versions_position(pool, tmp_path, "upgraded-twice")
    queue_id, address, ours = await _relayed(pool, "W")
    waiting = DeliveryEvent(queue_id, address, "deferred", "4.4.1", "connect timed out")
    await pool.execute("UPDATE maillog_positions SET pending = $2 WHERE path = $1",
                       before.key, saved_form([(time.time(), waiting)]))
    followers = [MaillogFollower(pool, log_file, host="upgraded-twice", syslog_name=name)
                 for name in ("postfix", "postfix-out")]
    await asyncio.gather(*(follower.poll() for follower in followers))
    assert (await timeline(pool, ours)).count("deferred") == 1
