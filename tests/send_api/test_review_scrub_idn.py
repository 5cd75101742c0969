"""Addresses in log lines are masked whatever their domain's script; a stored reply is one line.

SMTPUTF8 lets Postfix log recipients with internationalised (IDN) domains; the
address pattern took ASCII domains only, so one starting with another letter
(``jane@ñandu.es``) went to the log whole.
"""

from __future__ import annotations

import pytest

from postwarden_admin_api.send.scrub import for_log, scrub_reply


@pytest.mark.parametrize(
    ("reply", "masked"),
    [
        pytest.param("550 5.1.1 <jane@ñandu.es>: Recipient address rejected",
                     "550 5.1.1 <j***@ñandu.es>: Recipient address rejected", id="latin"),
        pytest.param("to=<kenji@例え.jp>, status=bounced", "to=<k***@例え.jp>, status=bounced",
                     id="cjk"),
        pytest.param("josé@ёлка.рф said: 552 mailbox full", "j***@ёлка.рф said: 552 mailbox full",
                     id="utf8-local-part-and-cyrillic"),
        pytest.param("550 <ann@example.org>, <bob@xn--andu-lra.es>",
                     "550 <a***@example.org>, <b***@xn--andu-lra.es>", id="ascii-and-punycode"),
    ],
)
def test_addresses_with_unicode_domains_are_masked(reply: str, masked: str) -> None:
    assert for_log(reply) == masked


@pytest.mark.parametrize("separator", ["\r\n", "\x85", "\u2028", "\u2029", "\x9b"])
def test_a_stored_reply_is_one_line_whatever_ends_its_lines(separator: str) -> None:
    reply = scrub_reply(f"451 4.3.0 try later{separator}250 2.0.0 Ok: queued as FORGED")
    assert reply == "451 4.3.0 try later 250 2.0.0 Ok: queued as FORGED"
    assert len(reply.splitlines()) == 1
