"""A recipient the relay's Postfix refuses gets a ``failed`` event on its timeline, with
its own (redacted) reply, and so a ``send.failed`` webhook, as a bounce's line does.

Postfix refuses here as a deployment's restrictions would: one listener refuses the
domain refused.example at RCPT (an access map), another every message at its end
(``smtpd_end_of_data_restrictions``), a third does both. The service follows the
instance's log.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import pytest

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.settings import ServiceSettings
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer
from tests.fixtures.postfix import CaptureServer, master_cf_options, running_postfix

from .conftest import SetRuntime
from .test_e2e import SNIPPET, Client, body, eventually, settled, status_of

pytestmark = pytest.mark.postfix

MAILLOG_HOST = "postwarden-refusals"
REFUSING = {"smtpd_recipient_restrictions":
            "check_recipient_access,inline:{refused.example=REJECT},permit_mynetworks,reject"}
CLOSING = {"smtpd_end_of_data_restrictions": "reject"}


@dataclass(frozen=True)
class Refusing:
    capture: CaptureServer
    maillog: str
    rcpt_port: int  # refuses refused.example at RCPT
    data_port: int  # refuses every message after its end
    both_port: int  # both


@pytest.fixture(scope="module")
def refusing() -> Iterator[Refusing]:
    ports: list[int] = []

    def listeners(instance: Any) -> None:
        for overrides in (REFUSING, CLOSING, REFUSING | CLOSING):
            ports.append(instance.add_smtpd_listener(master_cf_options(SNIPPET) | overrides))

    with running_postfix(configure=listeners) as (postfix, capture):
        yield Refusing(capture, str(postfix.maillog), *ports)


class Start(Protocol):
    def __call__(self, port: int, *, follow_log: bool = True) -> Awaitable[Client]: ...


@pytest.fixture
async def start(
    aiohttp_client: AiohttpClient, make_admin_settings: Callable[..., ServiceSettings],
    set_runtime: SetRuntime, refusing: Refusing,
) -> Start:
    """The service, relaying to the listener on ``port``."""
    await set_runtime(allowed_sender_addresses=["*@example.com"], outbound_enabled=True,
                      outbound_per_key_per_minute=1000, outbound_per_recipient_per_day=1000)

    async def app(port: int, *, follow_log: bool = True) -> Client:
        settings = make_admin_settings(
            relay_host="127.0.0.1", relay_port=port, relay_backoff_seconds=0.2,
            maillog_path=refusing.maillog if follow_log else None, maillog_host=MAILLOG_HOST)
        return await aiohttp_client(create_app(settings))

    return app


@pytest.fixture
async def sender(mint_key: MintKey) -> dict[str, str]:
    return bearer(await mint_key(Role.SENDER, ["*@example.com"]))


@pytest.fixture
async def send_failed(pool: asyncpg.Pool) -> Callable[[str], Awaitable[list[Any]]]:
    """An endpoint that wants send.failed (never called: the guard refuses its plain
    http URL), and the send.failed events raised for a message: (recipient, detail)."""
    await pool.execute(
        "INSERT INTO webhook_endpoints (name, url, url_origin, kind, events) "
        "VALUES ($1, 'http://127.0.0.1:9/', 'http://127.0.0.1:9', 'slack', '{send.failed}')",
        f"failures-{uuid.uuid4().hex[:6]}")

    async def raised(message_id: str) -> list[Any]:
        rows = await pool.fetch(
            "SELECT payload->>'recipient' AS recipient, payload->>'detail' AS detail "
            "FROM webhook_events WHERE type = 'send.failed' AND payload->>'id' = $1 "
            "ORDER BY id", message_id)
        return [tuple(row) for row in rows]

    return raised


def address(domain: str) -> str:
    return f"r-{uuid.uuid4().hex[:8]}@{domain}"


async def sent_and_settled(start: Start, port: int, sender: dict[str, str], to: list[str],
                           within: float = 30.0) -> dict[str, Any]:
    """The message sent to ``to`` through the listener on ``port``, once it settled."""
    client = await start(port)
    response = await client.post("/api/v1/send-email", json=body(to=to), headers=sender)
    assert response.status == 202, await response.text()
    location = response.headers["Location"]
    settled_message: dict[str, Any] = await eventually(
        lambda: settled(client, sender, location), within=within)
    return settled_message


def timelines(message: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    return {r["address"]: [(e["event"], e["detail"]) for e in r["timeline"]]
            for r in message["recipients"]}


async def test_a_recipient_refused_at_rcpt_fails_on_its_timeline(
    start: Start, sender: dict[str, str], refusing: Refusing,
    send_failed: Callable[[str], Awaitable[list[Any]]],
) -> None:
    """The others are relayed and delivered: the message ends partially delivered."""
    ok, refused = address("example.org"), address("refused.example")
    message = await sent_and_settled(start, refusing.rcpt_port, sender, [ok, refused],
                                     within=60)
    assert message["status"] == "partially_delivered"
    found = timelines(message)
    assert [event for event, _ in found[ok]] == ["relayed", "delivered"]
    ((event, detail),) = found[refused]
    assert event == "failed" and detail.startswith("554 5.7.1") and refused in detail
    (recipient,) = [r for r in message["recipients"] if r["address"] == refused]
    assert recipient["detail"] == detail == message["last_error"]
    assert [e["event"] for e in message["events"]] == ["accepted", "relayed"]
    assert await send_failed(message["id"]) == [(refused, detail)]


async def test_a_relayed_recipient_shows_relayed_with_the_queue_id_before_the_log_tells(
    start: Start, sender: dict[str, str], refusing: Refusing,
) -> None:
    """Its timeline was empty while the message was relayed; the one refused at RCPT
    shows only its failure."""
    ok, refused = address("example.org"), address("refused.example")
    client = await start(refusing.rcpt_port, follow_log=False)  # the message stays relayed
    response = await client.post("/api/v1/send-email", json=body(to=[ok, refused]),
                                 headers=sender)
    assert response.status == 202, await response.text()
    message = await eventually(lambda: relayed(client, sender, response.headers["Location"]))
    found = timelines(message)
    assert found[ok] == [("relayed", message["queue_id"])]
    assert [event for event, _ in found[refused]] == ["failed"]
    (relayed_event,) = [e for e in message["events"] if e["event"] == "relayed"]
    (shown,) = next(r["timeline"] for r in message["recipients"] if r["address"] == ok)
    assert shown == relayed_event


async def relayed(client: Client, sender: dict[str, str], location: str) -> Any:
    """The message once it is relayed, else None."""
    message = await status_of(client, sender, location)
    return message if message["status"] == "relayed" else None


async def test_recipients_all_refused_at_rcpt_each_fail_with_their_own_reply(
    start: Start, sender: dict[str, str], refusing: Refusing,
    send_failed: Callable[[str], Awaitable[list[Any]]],
) -> None:
    """The message fails at once: its own event (one) says so too."""
    first, second = address("refused.example"), address("refused.example")
    message = await sent_and_settled(start, refusing.rcpt_port, sender, [first, second])
    assert message["status"] == "failed"
    found = timelines(message)
    for mine, other in ((first, second), (second, first)):
        ((event, detail),) = found[mine]
        assert event == "failed" and mine in detail and other not in detail
    assert [e["event"] for e in message["events"]] == ["accepted", "failed"]
    assert sorted(await send_failed(message["id"]), key=str) == sorted(
        [(first, found[first][0][1]), (second, found[second][0][1]),
         (None, message["last_error"])], key=str)


async def test_a_message_refused_at_its_end_fails_every_recipient_on_its_timeline(
    start: Start, sender: dict[str, str], refusing: Refusing,
    send_failed: Callable[[str], Awaitable[list[Any]]],
) -> None:
    to = [address("example.org"), address("example.org")]
    message = await sent_and_settled(start, refusing.data_port, sender, to)
    assert message["status"] == "failed" and message["last_error"].startswith("5")
    reply = message["last_error"]
    assert timelines(message) == {a: [("failed", reply)] for a in to}
    assert [e["event"] for e in message["events"]] == ["accepted", "failed"]
    assert sorted(await send_failed(message["id"]), key=str) == sorted(
        [(to[0], reply), (to[1], reply), (None, reply)], key=str)


async def test_a_recipient_refused_before_the_message_keeps_its_own_reply(
    start: Start, sender: dict[str, str], refusing: Refusing,
) -> None:
    """Refused at RCPT, then the message at its end: the refused recipient failed for
    its own reason, the others for the message's."""
    kept, refused = address("example.org"), address("refused.example")
    message = await sent_and_settled(start, refusing.both_port, sender, [kept, refused])
    assert message["status"] == "failed"
    [(kept_event, kept_reply)] = timelines(message)[kept]
    [(refused_event, refused_reply)] = timelines(message)[refused]
    assert kept_event == refused_event == "failed"
    assert kept_reply == message["last_error"] and refused not in kept_reply
    assert refused in refused_reply and refused_reply != kept_reply
