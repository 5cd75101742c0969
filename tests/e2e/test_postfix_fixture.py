"""The Postfix fixture itself (bare, no milter): extra listeners, exact capture, bounces.

Other test packages (the send API's relay worker) rely on these behaviours.
"""

from __future__ import annotations

import pytest

from tests.fixtures.postfix import PostfixInstance, has_header, running_postfix, send_message

from . import messages
from .messages import RECIPIENT, SENDER, Delivered

pytestmark = pytest.mark.postfix


def test_second_listener_relays_and_capture_keeps_exact_bytes() -> None:
    ports: list[int] = []

    def add_listener(instance: PostfixInstance) -> None:
        ports.append(instance.add_smtpd_listener({"syslog_name": "postfix/second"}))

    with running_postfix(configure=add_listener) as (postfix, capture):
        sample = messages.clean()
        result = send_message(ports[0], sample.data, SENDER, [RECIPIENT])
        assert result.accepted, result
        assert result.queue_id is not None
        delivered = capture.wait_for_message(has_header("Message-ID", sample.message_id))
        got, sent = Delivered.parse(delivered.data), Delivered.parse(sample.data)
        # Bare Postfix adds its Received field and nothing else; the dot line survives.
        assert delivered.data == got.fields[0] + sample.data
        assert got.fields[1:] == sent.fields
        postfix.wait_for_log(rf"postfix/second/smtpd\[\d+\]: {result.queue_id}: client=")


def test_capture_reply_makes_postfix_bounce() -> None:
    with running_postfix() as (postfix, capture):
        capture.reply_for("nobody@example.net", "550 5.1.1 no such user")
        sample = messages.clean()
        result = send_message(postfix.port, sample.data, SENDER, ["nobody@example.net"])
        assert result.accepted, result
        postfix.wait_for_log(rf"{result.queue_id}: to=<nobody@example\.net>.*status=bounced")
        bounce = capture.wait_for_message(lambda m: m.mail_from == "<>")
        assert bounce.rcpt_tos == (SENDER,)
        assert b"550 5.1.1 no such user" in bounce.data
        assert not postfix.queue()
