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
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_admin_api.send.noqueuestops import NoQueueStops
from postwarden_admin_api.send.syslogline import split_line
from tests.fixtures.postfix import PostfixInstance, master_cf_options, running_postfix, send_message
from tests.test_contrib_postfix import POSTFIX_DIR

from .test_maillog import (
    accepted_message,
    delivery,
    held,
    message_status,
    recipients,
    relay_as,
)

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
        options = {**master_cf_options(POSTFIX_DIR / "master.cf.send-api"),
                   "smtpd_recipient_restrictions":
                   f"check_recipient_access,regexp:{access},permit_mynetworks,reject"}
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
        if (event := reader.event(split)) is not None:
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
