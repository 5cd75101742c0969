"""A Postfix restart between two messages of a busy session costs no attempt.

The relay keeps its SMTP connection from message to message and checks it with
NOOP only after two idle seconds. A connection Postfix closed meanwhile (it was
stopped or restarted) failed the next transaction at its first reply, before any
of the message went out, and that counted as an attempt (RETRY, deferred with
backoff) where a Postfix that cannot be reached is none (UNREACHABLE), and a
restarted one takes the message on a new connection.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from postwarden_admin_api.send import submit as submit_module
from postwarden_admin_api.send.submit import Outcome, SmtpSession
from tests.fixtures.postfix import PostfixInstance, running_postfix

pytestmark = pytest.mark.postfix


@pytest.fixture
def postfix() -> Iterator[PostfixInstance]:
    with running_postfix() as (instance, _):
        yield instance


def message() -> bytes:
    return (f"From: app@example.com\r\nTo: a@example.org\r\nSubject: {uuid.uuid4().hex}\r\n"
            "\r\nhello\r\n").encode()


async def test_a_connection_postfix_closed_is_replaced_not_an_attempt(
    postfix: PostfixInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A busy session: every message follows the last within the idle check's delay.
    monkeypatch.setattr(submit_module, "IDLE_CHECK_SECONDS", 3600.0)
    smtp = SmtpSession("127.0.0.1", postfix.port, 30.0, "relay.test")
    try:
        first = await smtp.submit("app@example.com", ["a@example.org"], message())
        assert first.outcome is Outcome.QUEUED
        await asyncio.to_thread(postfix.stop)
        stopped = await smtp.submit("app@example.com", ["a@example.org"], message())
        assert stopped.outcome is Outcome.UNREACHABLE, stopped
        first_again = await smtp.submit("app@example.com", ["a@example.org"], message())
        assert first_again.outcome is Outcome.UNREACHABLE
        await asyncio.to_thread(postfix.start)
        queued = await smtp.submit("app@example.com", ["a@example.org"], message())
        assert queued.outcome is Outcome.QUEUED, queued
        await asyncio.to_thread(postfix.stop)
        await asyncio.to_thread(postfix.start)  # a restart between two messages
        restarted = await smtp.submit("app@example.com", ["a@example.org"], message())
        assert restarted.outcome is Outcome.QUEUED, restarted
    finally:
        await smtp.close()
