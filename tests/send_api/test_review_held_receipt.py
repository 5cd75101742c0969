"""A message the milter put on hold is queued, though qmgr never takes it in.

When the answer to an attempt is lost, the relay looks for Postfix's commit in its
log before sending again. qmgr's ``(queue active)`` line says so for mail in the
active queue; a message a milter quarantined goes to the hold queue, where qmgr
never sees it: its commit is cleanup's ``milter-hold: END-OF-MESSAGE`` line. Sent
again, a second copy waits on hold, and releasing the hold queue sends both.
Runs against the real Postfix, milter and follower of test_e2e.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.send.build import build_message, new_message_id
from postwarden_admin_api.send.outbox import Submission, enqueue
from postwarden_admin_api.send.receipts import ReceiptLine, parse_receipt
from postwarden_admin_api.send.request_model import parse_request
from postwarden_admin_api.send.sending import SEND
from postwarden_admin_api.send.submit import data_block
from postwarden_admin_api.send.syslogline import split_line
from tests.fixtures.submissions import CAPS, NOW, ROOMY

from .test_e2e import (  # noqa: F401 - fixtures
    MAILLOG_HOST,
    Client,
    Mail,
    client,
    eventually,
    mail,
)

PREFIX = "Dec  5 04:47:08 mx postfix/cleanup[77]: 4AB: "


async def hang_up_after_the_dot(port: int, sender: str, recipient: str, content: bytes
                                ) -> None:
    """Send the message and close the connection without reading the answer to the
    final dot."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for command in (None, b"EHLO client.test", f"MAIL FROM:<{sender}>".encode(),
                        f"RCPT TO:<{recipient}>".encode(), b"DATA"):
            if command is not None:
                writer.write(command + b"\r\n")
            async with asyncio.timeout(30):
                while (await reader.readline())[3:4] == b"-":  # a multi-line reply
                    pass
        writer.write(data_block(content))
        await writer.drain()
    finally:
        writer.close()


def held_submission(recipient: str) -> Submission:
    """A submission the send policy's milter quarantines (its subject says so)."""
    request = parse_request({"from": "app@example.com", "to": [recipient],
                             "subject": "[hold-me] lost answer", "text": "t"},
                            CAPS, lambda m: True)
    message = uuid.uuid4()
    message_id = new_message_id(request.sender, message)
    return Submission("held", request, message_id, build_message(request, message_id, NOW),
                      [uuid.uuid4().hex], None, message)


@pytest.mark.parametrize(
    ("text", "committed"),
    [
        # At the end of the message: cleanup commits the file to the hold queue next.
        ("milter-hold: END-OF-MESSAGE from localhost[127.0.0.1]: held; from=<a@b> to=<c@d>",
         True),
        # header_checks' HOLD comes while the message still arrives: no commit yet.
        ("hold: header Subject: x from localhost[127.0.0.1]; from=<a@b> to=<c@d>", None),
        ("milter-hold: DATA from localhost[127.0.0.1]: held", None),
    ],
)
def test_a_milter_hold_at_the_end_of_the_message_is_a_commit(
    text: str, committed: bool | None
) -> None:
    split = split_line(PREFIX + text)
    assert split is not None
    expected = None if committed is None else ReceiptLine("4AB", None, committed=committed)
    assert parse_receipt(split) == expected


@pytest.mark.postfix
async def test_an_attempt_cut_off_after_postfix_held_it_is_not_sent_again(
    client: Client, pool: asyncpg.Pool, mail: Mail,  # noqa: F811 - the imported fixtures
) -> None:
    recipient = f"held-{uuid.uuid4().hex[:8]}@example.org"
    async with pool.acquire() as conn, conn.transaction():
        message = (await enqueue(conn, held_submission(recipient), ROOMY)).id
        # As a cut-off attempt leaves it; its lease far off while Postfix gets it by hand.
        await conn.execute("UPDATE outbox SET attempts = 1, unsettled = true, next_attempt_at "
                           "= now() + interval '1 hour' WHERE message_id = $1", message)
    row = await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", message)
    before = await asyncio.to_thread(mail.postfix.held_queue_ids)
    # The attempt whose answer was lost: the client hangs up right after the final dot.
    await hang_up_after_the_dot(mail.submission_port, row["envelope_from"], recipient,
                                row["content"])
    try:
        async def newly_held() -> set[str]:
            return await asyncio.to_thread(mail.postfix.held_queue_ids) - before

        (queue_id,) = await eventually(newly_held)
        await eventually(lambda: pool.fetchval(
            "SELECT EXISTS (SELECT FROM relay_receipts WHERE message_id = $1 AND queue_id = $2 "
            "AND host = $3)", message, queue_id, MAILLOG_HOST))
        await pool.execute("UPDATE outbox SET next_attempt_at = now() WHERE message_id = $1",
                           message)
        client.app[SEND].relay.wake()

        async def stored() -> Any:
            return await pool.fetchrow("SELECT * FROM outbound_messages WHERE id = $1 AND "
                                       "status <> 'queued'", message)

        found = await eventually(stored)
        assert (found["status"], found["queue_id"]) == ("relayed", queue_id)
        assert await pool.fetchval("SELECT count(*) FROM outbound_events WHERE message_id = $1 "
                                   "AND event = 'found_in_log'", message) == 1
        # The hold line, a commit now, is still the timeline's "held" event.
        await eventually(lambda: pool.fetchval(
            "SELECT EXISTS (SELECT FROM outbound_events WHERE message_id = $1 AND event = "
            "'held')", message))
    finally:  # the copies on hold, one or (sent again) two
        for held_id in await asyncio.to_thread(mail.postfix.held_queue_ids):
            await asyncio.to_thread(mail.postfix.delete, held_id)
