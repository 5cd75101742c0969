"""Builders shared by the policy language tests: policies from text, facts by hand."""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Iterable
from typing import TYPE_CHECKING

from postwarden_policies import (
    Envelope,
    Header,
    MessageFacts,
    MimePart,
    PolicySet,
    evaluate_message,
)
from postwarden_policies.loader import load_policy_set_from_sources

if TYPE_CHECKING:
    from postwarden_policies.policytests import Failure

HEAD = "version: 1\nname: t\n"


def policy(body: str, *, head: str = HEAD) -> PolicySet:
    """A one-policy set from the YAML after the version/name header."""
    return load_policy_set_from_sources([("t.yaml", head + textwrap.dedent(body))])


def said(failures: Iterable[Failure]) -> tuple[str, ...]:
    """What a case's failures say, as `test` prints them."""
    return tuple(map(str, failures))


def rule_policy(when: str, then: str = "accept") -> PolicySet:
    """A policy with one rule named r: ``when`` is the YAML of its conditions."""
    indented = textwrap.indent(textwrap.dedent(when).strip(), "      ")
    return policy(f"rules:\n  - name: r\n    when:\n{indented}\n    then: {then}\n")


MAIL_HEAD = "From: a@elsewhere.test\r\nTo: b@example.com\r\nMIME-Version: 1.0\r\nSubject: hi\r\n"


def text_message(content_type: str, body: str, cte: str = "8bit") -> bytes:
    """A message of one UTF-8 text part (``content_type`` without its charset)."""
    return (
        f"{MAIL_HEAD}Content-Type: {content_type}; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: {cte}\r\n\r\n{body}\r\n"
    ).encode()


@functools.cache
def body_rule(pattern: str) -> PolicySet:
    """A policy whose rule r rejects a body the RE2 ``pattern`` matches."""
    return rule_policy(f"body: '{pattern}'", "reject")


def body_rule_matches(pattern: str, raw: bytes) -> bool:
    """Whether a body rule of the RE2 ``pattern`` matches the message ``raw``."""
    return evaluate_message(body_rule(pattern), raw, Envelope()).rules == ("r",)


def attachment(
    index: int,
    filename: str | None,
    content_type: str = "application/octet-stream",
    *,
    detected: str | None = None,
    size: int = 100,
) -> MimePart:
    return MimePart(
        index=index,
        path=str(index),
        depth=1,
        parent=0,
        content_type=content_type,
        charset=None,
        transfer_encoding="base64",
        disposition="attachment",
        filename=filename,
        filenames=(filename,) if filename else (),
        is_multipart=False,
        is_attachment=True,
        header_start=0,
        body_start=0,
        body_end=0,
        encoded_size=size,
        decoded_size=size,
        detected_type=detected,
    )


def html_part(index: int) -> MimePart:
    return MimePart(
        index=index,
        path=str(index),
        depth=1,
        parent=0,
        content_type="text/html",
        charset="utf-8",
        transfer_encoding="7bit",
        disposition=None,
        filename=None,
        is_multipart=False,
        is_attachment=False,
        header_start=0,
        body_start=0,
        body_end=0,
        encoded_size=10,
        decoded_size=10,
        detected_type=None,
    )


def facts(
    *,
    sender: str = "someone@elsewhere.test",
    recipients: tuple[str, ...] = ("alice@example.com",),
    client_ip: str | None = "198.51.100.7",
    client_name: str | None = "mail.elsewhere.test",
    helo: str | None = "mail.elsewhere.test",
    auth_user: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    from_address: str | None = "someone@elsewhere.test",
    subject: str | None = "Hello",
    parts: tuple[MimePart, ...] = (),
    size: int = 1000,
    flags: frozenset[str] = frozenset(),
    duplicate: bool = False,
    text: str = "",
) -> MessageFacts:
    """Facts built by hand, for conditions that need no raw message."""
    envelope = Envelope(sender, recipients, client_ip, client_name, helo, auth_user, "Q1")
    all_headers = tuple(Header(n, v, v) for n, v in headers)
    if subject is not None:
        all_headers += (Header("Subject", subject, subject),)
    return MessageFacts(
        envelope=envelope,
        raw=b"",
        body_offset=0,
        headers=all_headers,
        parts=parts,
        from_address=from_address,
        subject=subject,
        message_id=None,
        size=size,
        flags=flags,
        duplicate=duplicate,
        text=text,
    )
