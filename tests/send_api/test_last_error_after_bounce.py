"""A message Postfix's log settles as failed or partially_delivered says why in
``last_error``: the (redacted) detail of the recipient that failed last (migration 0029).

End to end through the real Postfix of test_e2e, then the follower's rule on lines
written by hand, as test_maillog writes them.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api.send.relayoutcomes import Claimed, RelayConfig, record
from postwarden_admin_api.send.submit import Outcome, SubmitResult

from .test_e2e import (  # noqa: F401 - fixtures
    Client,
    Mail,
    body,
    client,
    eventually,
    mail,
    sender,
    settled,
)
from .test_maillog import (
    accepted_message,
    append,
    follower_at_end,
    line,
    new_queue_id,
    relayed_message,
    sent,
)


@pytest.mark.postfix
@pytest.mark.parametrize(("also_delivered", "status"),
                         [(False, "failed"), (True, "partially_delivered")])
async def test_a_bounced_message_says_why_in_last_error(
    client: Client, sender: dict[str, str], mail: Mail,  # noqa: F811 - the fixtures
    also_delivered: bool, status: str,
) -> None:
    gone = f"gone-{uuid.uuid4().hex[:8]}@example.org"
    mail.capture.reply_for(gone, "550 5.1.1 no such user token=abcdefghijkl")
    to = [gone, f"ok-{uuid.uuid4().hex[:8]}@example.org"] if also_delivered else [gone]
    response = await client.post("/api/v1/send-email", json=body(to=to), headers=sender)
    location = response.headers["Location"]
    message = await eventually(lambda: settled(client, sender, location), within=60)
    assert message["status"] == status
    (bounced,) = [r for r in message["recipients"] if r["address"] == gone]
    assert bounced["status"] == "bounced"
    assert message["last_error"] == bounced["detail"]
    assert "550 5.1.1 no such user token=[REDACTED]" in message["last_error"]


async def last_error(pool: asyncpg.Pool, message_id: uuid.UUID) -> Any:
    return await pool.fetchrow("SELECT status, last_error FROM outbound_messages "
                               "WHERE id = $1", message_id)


async def test_the_recipient_that_failed_last_says_why(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Lines applied in one poll settle the message once: the later line's reply."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("LASTERR")
    message_id = await relayed_message(pool, queue_id, "a@example.org", "b@example.org")
    # b@ last: neither the first address nor the first line names the answer.
    append(log_file,
           line(queue_id, "a@example.org", "bounced", "5.1.1", "550 5.1.1 no such user"),
           line(queue_id, "b@example.org", "bounced", "5.2.2", "552 5.2.2 mailbox full"))
    await follower.poll()
    assert tuple(await last_error(pool, message_id)) == ("failed", "552 5.2.2 mailbox full")


async def test_a_recipient_the_relay_refused_says_why_when_the_others_are_delivered(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("REFUSED")
    message_id = await accepted_message(pool, "ok@example.org", "nobody@example.org")
    refused = {"nobody@example.org": "550 5.1.1 <nobody@example.org>: no such user"}
    async with pool.acquire() as conn:
        await record(conn, RelayConfig("127.0.0.1", 25, 3, 1.0),
                     Claimed(message_id, "app@example.com", [], b"", attempts=1),
                     SubmitResult(Outcome.QUEUED, f"250 queued as {queue_id}", queue_id,
                                  refused))
    append(log_file, sent(queue_id, "ok@example.org"))
    await follower.poll()
    assert tuple(await last_error(pool, message_id)) == (
        "partially_delivered", "550 5.1.1 <nobody@example.org>: no such user")


async def test_a_message_delivered_in_the_end_says_no_error(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """One alias member bounced, then another had it: the recipient is delivered."""
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("ALIASERR")
    message_id = await relayed_message(pool, queue_id, "team@example.org")
    member = (f"Nov 23 15:12:49 mx postfix/local[7]: {queue_id}: to=<{{}}@mx.example>, "
              "orig_to=<team@example.org>, relay=local, delay=0, delays=0/0/0/0, ")
    append(log_file, member.format("bob") + "dsn=5.1.1, status=bounced (550 5.1.1 unknown)\n")
    await follower.poll()
    assert tuple(await last_error(pool, message_id)) == ("failed", "550 5.1.1 unknown")
    append(log_file, member.format("ann") + "dsn=2.0.0, status=sent (delivered to mailbox)\n")
    await follower.poll()
    assert tuple(await last_error(pool, message_id)) == ("delivered", None)
