"""header_checks with the real Postfix: cleanup logs a check's verdict on a header as it
reads it, so a HOLD on a header before the Message-ID (ours carry From, To and Subject
first) comes between the message's first line (smtpd's ``client=``) and the Message-ID
line naming ours. Read in one read with them, it was dropped: the message got no
``held`` event (nor send.held) while it waited in the hold queue."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.periodic import stop_task
from postwarden_admin_api.send.maillog import MaillogFollower
from tests.fixtures.postfix import PostfixInstance, running_postfix

from .test_maillog import held, sent_through_postfix
from .test_maillog_rcpt_access_postfix import relayed_once_old
from .test_relay import database_url  # noqa: F401 - a fixture
from .test_review_held_receipt import hang_up_after_the_dot
from .test_review_log_lag import cut_off

pytestmark = pytest.mark.postfix


@pytest.fixture(scope="module")
def postfix() -> Iterator[PostfixInstance]:
    # Not under pytest's 0700 tmp: Postfix's cleanup reads it as the postfix user.
    with tempfile.TemporaryDirectory(prefix="postwarden-checks-") as directory:
        Path(directory).chmod(0o755)
        checks = Path(directory) / "header_checks"
        checks.write_text("/^Subject: hold-me/ HOLD\n")
        checks.chmod(0o644)
        with running_postfix(main={"header_checks": f"regexp:{checks}"}) as (instance, _):
            yield instance


async def test_a_message_header_checks_hold_is_held(
    pool: asyncpg.Pool, postfix: PostfixInstance
) -> None:
    address = f"hc-{uuid.uuid4().hex[:8]}@example.org"
    follower = MaillogFollower(pool, postfix.maillog, host=f"hc-{uuid.uuid4().hex[:6]}")
    await follower.poll()
    message_id, result = await sent_through_postfix(pool, postfix.port, follower.host,
                                                    address, "hold-me")
    arrived = await asyncio.to_thread(postfix.wait_for_log,
                                      rf"{result.queue_id}: message-id=", 30)
    assert f"{result.queue_id}: hold: header Subject" in arrived.string[:arrived.start()]
    await follower.poll()  # the whole arrival in one read
    await follower.release()
    assert await held(pool, message_id) == ["held in Postfix's hold queue by its checks"]


async def test_a_message_header_checks_hold_whose_answer_was_lost_is_not_sent_again(
    pool: asyncpg.Pool, postfix: PostfixInstance,
) -> None:
    """cleanup's hold line comes while the message may still be cut off, and nothing
    commits a held file: its receipt stayed open, and past OPEN_RECEIPT_LIMIT, Postfix's
    queue not listed, the relay sent it again. Its smtpd session's end, every DATA
    answered 250, commits it."""
    address = f"hl-{uuid.uuid4().hex[:8]}@example.org"
    follower = MaillogFollower(pool, postfix.maillog, host=f"hl-{uuid.uuid4().hex[:6]}")
    await follower.poll()
    task = asyncio.create_task(follower.run())
    try:
        message = await cut_off(pool, address)
        row = await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", message)
        content = row["content"].replace(b"\r\nSubject: ", b"\r\nSubject: hold-me ", 1)
        assert b"Subject: hold-me" in content
        await hang_up_after_the_dot(postfix.port, row["envelope_from"], address, content)
        found = await asyncio.to_thread(
            postfix.wait_for_log, rf"(\w+): message-id=<{message.hex}@(?s:.*?)"
            r"smtpd\[\d+\]: disconnect from", 30)
        assert f"{found[1]}: hold: header Subject" in postfix.log()
        stored = await relayed_once_old(pool, follower, postfix.port, message)
    finally:
        await stop_task(task)
    assert (stored["status"], stored["queue_id"]) == ("relayed", found[1])
