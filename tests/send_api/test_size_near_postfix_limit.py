"""A message built just under ``max_message_bytes``, set equal to Postfix's
``message_size_limit`` as the docs advise, through the real Postfix and milter: the
API's 202 must not be followed by Postfix's 552."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.send.build import build_message
from postwarden_admin_api.send.checks import postfix_room
from postwarden_admin_api.send.request_model import Caps, parse_request
from postwarden_admin_api.settings import ServiceSettings
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer

from .conftest import Client, SetRuntime
from .test_e2e import Mail, eventually, running_mail, settled

pytestmark = pytest.mark.postfix

LIMIT = 60_000


@pytest.fixture(scope="module")
def mail(database_url: str) -> Iterator[Mail]:
    with running_mail(database_url, {"message_size_limit": str(LIMIT)}) as mail:
        yield mail


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, make_admin_settings: Callable[..., ServiceSettings],
    set_runtime: SetRuntime, mail: Mail,
) -> Client:
    await set_runtime(allowed_sender_addresses=["*@example.com"], outbound_enabled=True,
                      max_message_bytes=LIMIT)
    return await aiohttp_client(create_app(make_admin_settings(**mail.relay(attempts=3))))


def sized(recipients: list[str], size: int) -> dict[str, Any]:
    """A request whose built message is ``size`` bytes."""
    body: dict[str, Any] = {"from": "app@example.com", "to": recipients, "subject": "size",
                            "text": "y"}
    caps = Caps(max_recipients=50, max_message_bytes=10 * LIMIT, max_attachment_bytes=LIMIT)
    empty = build_message(parse_request(body, caps, lambda m: True),
                          f"<{uuid.uuid4().hex}@example.com>", dt.datetime.now(dt.UTC))
    lines = (size - len(empty)) // 72
    text = ("x" * 70 + "\r\n") * lines
    return {**body, "text": text + "y" * (1 + size - len(empty) - 72 * lines)}


@pytest.mark.parametrize("count", [1, 50])
async def test_a_message_postfix_would_find_too_big_is_refused_and_one_that_fits_delivered(
    client: Client, mint_key: MintKey, count: int,
) -> None:
    sender = bearer(await mint_key(Role.SENDER, ["*@example.com"]))
    domain = "d" * 60 + ".example.org"  # long addresses: each is several times in the envelope
    recipients = [f"{uuid.uuid4().hex}{i}@{domain}" for i in range(count)]
    near = sized(recipients, LIMIT - 100)
    response = await client.post("/api/v1/send-email", json=near, headers=sender)
    assert response.status == 413, "accepted, then Postfix's 552 Message file too big"
    assert (await response.json())["error"]["code"] == "message_too_large"

    caps = Caps(max_recipients=50, max_message_bytes=LIMIT, max_attachment_bytes=LIMIT)
    room = postfix_room(parse_request(near, caps, lambda m: True))
    response = await client.post("/api/v1/send-email", json=sized(recipients, LIMIT - room),
                                 headers=sender)
    assert response.status == 202
    message = await eventually(lambda: settled(client, sender, response.headers["Location"]),
                               within=60)
    assert message["status"] == "delivered", message["last_error"]
