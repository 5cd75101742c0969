"""A To header as long as outbound_max_recipients of long names make it, through the
real Postfix and milter: Postfix dropped the addresses past about 60,000 bytes and
delivered the rest, so a message the API took was not the one sent."""

from __future__ import annotations

import bisect
import datetime as dt
import email
import email.utils
import re
import uuid
from email import policy
from typing import Any

import pytest

from postwarden_admin_api.context import Role
from postwarden_admin_api.send.build import build_message
from postwarden_admin_api.send.checks import MAX_ADDRESS_HEADER
from postwarden_admin_api.send.request_model import Caps, parse_request
from tests.fixtures.adminapp import MintKey, bearer

from .conftest import Client
from .test_e2e import (  # noqa: F401 - client and mail are fixtures
    Mail,
    client,
    eventually,
    mail,
    with_message_id,
)

pytestmark = pytest.mark.postfix

CAPS = Caps(max_recipients=50, max_message_bytes=10_000_000, max_attachment_bytes=1_000)
NAME = "\N{GRINNING FACE}" * 200  # the longest display name, each character encoded


def request(addresses: list[str], last_name: int) -> dict[str, Any]:
    """To ``addresses``, each with NAME but the last, with ``last_name`` characters of it."""
    names = [NAME] * (len(addresses) - 1) + [NAME[:last_name]]
    return {"from": "app@example.com", "subject": "many", "text": "hi",
            "to": [f"{name} <{address}>" for name, address in zip(names, addresses, strict=True)]}


def to_size(body: dict[str, Any]) -> int:
    """The bytes of the built To header, its folds and line ends included."""
    built = build_message(parse_request(body, CAPS, lambda m: True), "<s@example.com>",
                          dt.datetime.now(dt.UTC))
    found = re.search(rb"\r\nTo: .*?\r\n(?![ \t])", built, re.DOTALL)
    assert found is not None
    return len(found[0]) - 2


async def test_a_to_header_postfix_would_cut_is_refused_and_one_just_under_delivered_whole(
    client: Client,  # noqa: F811 - the imported fixture
    mint_key: MintKey,
    mail: Mail,  # noqa: F811 - the imported fixture
) -> None:
    sender = bearer(await mint_key(Role.SENDER, ["*@example.com"]))
    addresses = [f"{uuid.uuid4().hex}{'l' * 30}@{'d' * 60}.example.org" for _ in range(50)]
    assert to_size(request(addresses, 200)) > MAX_ADDRESS_HEADER  # the default 50 get there
    count = next(n for n in range(1, 51) if to_size(request(addresses[:n], 200))
                 > MAX_ADDRESS_HEADER)
    # The last name as long as keeps the header within the limit, and one longer.
    fits = bisect.bisect_right(range(201), MAX_ADDRESS_HEADER,
                               key=lambda k: to_size(request(addresses[:count], k))) - 1
    over = await client.post("/api/v1/send-email", headers=sender,
                             json=request(addresses[:count], fits + 1))
    assert over.status == 413, "accepted, then sent with addresses cut from its To"
    [detail] = (await over.json())["error"]["details"]
    assert (detail["field"], detail["code"]) == ("to", "header_too_large")

    sent = await client.post("/api/v1/send-email", headers=sender,
                             json=request(addresses[:count], fits))
    assert sent.status == 202, await sent.text()
    message_id = (await sent.json())["message_id"]
    (delivered,) = await eventually(lambda: with_message_id(mail, message_id), within=60)
    parsed = email.message_from_bytes(delivered.data, policy=policy.compat32)
    shown = [address for _, address in email.utils.getaddresses(parsed.get_all("To"))]
    assert shown == addresses[:count]
