"""A crash leaves a log's tail NUL-filled (the file's size written, its last blocks not),
and syslog or postlogd append after it: the first line written then follows the NULs,
with no newline between them. Read as a line, the NULs hid the line's stamp (or, in
RFC 5424's form, the line), or made it part of an over-long line, skipped."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from postwarden_admin_api.send.maillog import MAX_LINE

from .test_maillog import append, follower_at_end, message_status, new_queue_id, relayed_message


def traditional(queue_id: str, logged: float) -> str:
    return (time.strftime("%b %d %H:%M:%S", time.localtime(logged))
            + f" mx postfix/smtp[7]: {queue_id}: to=<a@example.org>, relay=x, delay=0, "
            "delays=0/0/0/0, dsn=2.0.0, status=sent (250 ok)\n")


def rfc5424(queue_id: str, logged: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(logged))
    return (f"<22>1 {stamp} mx postfix/smtp 7 - - {queue_id}: to=<a@example.org>, "
            "relay=x, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (250 ok)\n")


@pytest.mark.parametrize(("form", "nuls"), [
    pytest.param(traditional, 4096, id="traditional"),
    pytest.param(rfc5424, 4096, id="rfc5424"),
    pytest.param(traditional, MAX_LINE + 1, id="longer-than-a-line"),
])
async def test_the_line_after_a_run_of_nuls_is_read_whole(
    pool: asyncpg.Pool, tmp_path: Path, form: Callable[[str, float], str], nuls: int,
) -> None:
    log_file, follower = await follower_at_end(pool, tmp_path)
    queue_id = new_queue_id("NUL")
    message_id = await relayed_message(pool, queue_id, "a@example.org")
    logged = time.time() - 60
    with log_file.open("ab") as out:
        out.write(b"\0" * nuls)
    await follower.poll()  # the NULs are there at the restart after the crash
    append(log_file, form(queue_id, logged))
    await follower.poll()
    await follower.release()
    assert await message_status(pool, message_id) == "delivered"
    stamp = await pool.fetchval("SELECT logged_at FROM outbound_events WHERE message_id = $1 "
                                "AND event = 'delivered'", message_id)
    assert stamp is not None and abs(stamp.timestamp() - int(logged)) < 1
