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

from postwarden_admin_api.send.maillog import MaillogFollower
from tests.fixtures.postfix import PostfixInstance, running_postfix

from .test_maillog import held, sent_through_postfix

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
