"""The send API end to end: service -> Postfix (with the milter) -> capture server.

The Postfix instance gets the dedicated submission listener of
``contrib/postfix/master.cf.send-api`` (its ``-o`` options, on a free port),
and the service follows the instance's ``maillog_file``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import email
import email.header
import re
import smtplib
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.metrics import METRICS
from postwarden_admin_api.runtime_settings import RUNTIME
from postwarden_admin_api.send.outbox import enqueue
from postwarden_admin_api.send.sending import SEND
from postwarden_admin_api.settings import ServiceSettings
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer
from tests.fixtures.milterproc import running_milter
from tests.fixtures.postfix import (
    CapturedMessage,
    CaptureServer,
    PostfixInstance,
    master_cf_options,
    running_postfix,
)
from tests.fixtures.submissions import ROOMY, submission

from .conftest import SetRuntime

pytestmark = pytest.mark.postfix

Client = TestClient[Any, Any]
ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "contrib" / "postfix" / "master.cf.send-api"
POLICY_DIR = Path(__file__).parent / "policies"


@dataclass(frozen=True)
class Mail:
    postfix: PostfixInstance
    capture: CaptureServer
    submission_port: int

    def relay(self, attempts: int) -> dict[str, Any]:
        """The service's settings relaying to this Postfix and following its log."""
        return {"relay_host": "127.0.0.1", "relay_port": self.submission_port,
                "relay_max_attempts": attempts, "relay_backoff_seconds": 0.2,
                "maillog_path": str(self.postfix.maillog)}


MAILLOG_HOST = "postwarden-e2e"  # the maillog_host setting, not this machine's name


@contextmanager
def running_mail(database_url: str, main: dict[str, str] | None = None) -> Iterator[Mail]:
    """The milter with the example policies, and Postfix with the send API's listener
    (``main``: more main.cf settings)."""
    ports: list[int] = []

    def listener(instance: PostfixInstance) -> None:
        ports.append(instance.add_smtpd_listener(master_cf_options(SNIPPET)))

    with (
        running_milter(POLICY_DIR, database_url) as milter,
        running_postfix(milter=milter.postfix_spec, main=main,
                        configure=listener) as (postfix, capture),
    ):
        yield Mail(postfix, capture, ports[0])


@pytest.fixture(scope="module")
def mail(database_url: str) -> Iterator[Mail]:
    with running_mail(database_url) as mail:
        yield mail


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, make_admin_settings: Callable[..., ServiceSettings],
    set_runtime: SetRuntime, mail: Mail,
) -> Client:
    await set_runtime(allowed_sender_addresses=["*@example.com"], outbound_enabled=True,
                      outbound_per_key_per_minute=1000, outbound_per_recipient_per_day=1000)
    settings = make_admin_settings(**mail.relay(attempts=12), maillog_host=MAILLOG_HOST)
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def sender(mint_key: MintKey) -> dict[str, str]:
    return bearer(await mint_key(Role.SENDER, ["*@example.com"]))


async def eventually(predicate: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.1)


def body(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"from": "App <app@example.com>",
                              "to": [f"{uuid.uuid4().hex[:10]}@example.org"],
                              "subject": "Hello", "text": "Hi there"}
    values.update(changes)
    return values


def with_message_id(mail: Mail, message_id: str) -> list[CapturedMessage]:
    needle = f"Message-ID: {message_id}".encode()
    return [m for m in mail.capture.messages if needle in m.data]


async def status_of(client: Client, headers: dict[str, str], location: str) -> dict[str, Any]:
    message: dict[str, Any] = await (await client.get(location, headers=headers)).json()
    return message


async def settled(client: Client, headers: dict[str, str], location: str) -> Any:
    """The message once its status is final, else None."""
    message = await status_of(client, headers, location)
    return message if message["status"] not in ("queued", "relayed") else None


async def last_event(client: Client, headers: dict[str, str], location: str, event: str) -> Any:
    """The message once ``event`` is the last of its own events (not a recipient's), else
    None."""
    message = await status_of(client, headers, location)
    return message if [e["event"] for e in message["events"]][-1:] == [event] else None


async def test_an_allowed_sender_is_delivered_with_the_milter_header(
    client: Client, sender: dict[str, str], mail: Mail
) -> None:
    response = await client.post("/api/v1/send-email", json=body(), headers=sender)
    assert response.status == 202
    accepted = await response.json()
    (delivered,) = await eventually(lambda: with_message_id(mail, accepted["message_id"]))
    parsed = email.message_from_bytes(delivered.data, policy=policy.default)
    assert parsed["X-Postwarden-Id"]
    assert delivered.mail_from == "app@example.com"
    location = response.headers["Location"]
    message = await eventually(lambda: settled(client, sender, location))
    assert message["status"] == "delivered"
    assert message["queue_id"] and message["recipients"][0]["status"] == "delivered"
    relayed, delivered = message["recipients"][0]["timeline"]
    assert (relayed["event"], relayed["detail"]) == ("relayed", message["queue_id"])
    assert delivered["event"] == "delivered" and "250" in delivered["detail"]
    # When Postfix logged the line (its log has whole seconds), then read and recorded.
    logged, recorded = (dt.datetime.fromisoformat(delivered[k]) for k in ("logged_at", "time"))
    assert dt.timedelta(0) <= recorded - logged < dt.timedelta(seconds=10)
    assert {e["event"]: e["logged_at"] for e in message["events"]}["relayed"] is None




async def test_a_disallowed_sender_reaches_nothing(
    client: Client, sender: dict[str, str], mail: Mail
) -> None:
    before = len(mail.capture.messages)
    log_before = mail.postfix.log()
    marker = uuid.uuid4().hex
    response = await client.post("/api/v1/send-email", headers=sender,
                                 json=body(**{"from": "boss@evil.example"}, subject=marker))
    assert response.status == 403
    await asyncio.sleep(1.5)
    assert len(mail.capture.messages) == before
    assert "boss@evil.example" not in mail.postfix.log()[len(log_before):]


INJECTIONS: list[dict[str, Any]] = [
    {"subject": "hi\r\nBcc: victim@evil.example"},
    {"from": "App\r\nBcc: victim@evil.example <app@example.com>"},
    {"from": '"App Bcc: victim@evil.example" <app@example.com>'},  # another address shown
    {"to": ["ok@example.org\r\nBcc: victim@evil.example"]},
    {"cc": ["ok@example.org\nBcc: victim@evil.example"]},
    {"bcc": ["ok@example.org\rBcc: victim@evil.example"]},
    {"reply_to": ["r@example.com\r\nBcc: victim@evil.example"]},
    {"headers": {"X-Tag": "v\r\nBcc: victim@evil.example"}},
    {"headers": {"X-Tag\r\nBcc": "victim@evil.example"}},
    {"headers": {"Bcc": "victim@evil.example"}},
    {"headers": {"Sender": "app@example.com\r\nBcc: victim@evil.example"}},
    {"attachments": [{"filename": "a.txt\r\nBcc: victim@evil.example",
                      "content_type": "text/plain", "content": "aGk="}]},
    {"attachments": [{"filename": "a.txt", "content": "aGk=",
                      "content_type": "text/plain\r\nBcc: victim@evil.example"}]},
    {"tags": ["a\r\nBcc: victim@evil.example"]},
]


async def test_header_injection_is_refused_or_neutralised(
    client: Client, sender: dict[str, str], mail: Mail
) -> None:
    for injection in INJECTIONS:
        response = await client.post("/api/v1/send-email", json=body(**injection),
                                     headers=sender)
        assert response.status in (403, 422), injection
    # Text that only looks like a header stays inside its own header or body.
    neutral = body(**{
        "from": '"App Bcc: victims" <app@example.com>',
        "subject": "Bcc: victim@evil.example", "text": "Bcc: victim@evil.example\r\n\r\nx",
        "headers": {"X-Note": "Bcc: victim@evil.example"},
        "metadata": {"note": "x\r\nBcc: victim@evil.example"},
    })
    response = await client.post("/api/v1/send-email", json=neutral, headers=sender)
    assert response.status == 202
    accepted = await response.json()
    (delivered,) = await eventually(lambda: with_message_id(mail, accepted["message_id"]))
    parsed = email.message_from_bytes(delivered.data, policy=policy.default)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "Bcc: victim@evil.example"
    assert delivered.rcpt_tos == tuple(neutral["to"])
    assert all("evil.example" not in "".join(m.rcpt_tos) for m in mail.capture.messages)


def _attached(filename: str, content_type: str, content: bytes) -> dict[str, Any]:
    return {"attachments": [{"filename": filename, "content_type": content_type,
                             "content": base64.b64encode(content).decode()}]}


UUENCODED_EXE = "begin 644 run.exe\n" + binascii.b2a_uu(b"MZ\x90\x00").decode() + "`\nend\n"


@pytest.mark.parametrize(("changes", "field"), [
    # The policy's *.scr glob, in any case, matches a long s (U+017F) as s.
    pytest.param(_attached("report.\u017fcr", "application/octet-stream", b"screensaver"),
                 "attachments[0]", id="long-s"),
    # The milter lists a file uuencoded in plain text as an attachment.
    pytest.param({"text": f"Your program:\n{UUENCODED_EXE}"}, "text", id="uuencoded-text"),
    pytest.param(_attached("notes.txt", "text/plain", UUENCODED_EXE.encode()),
                 "attachments[0]", id="uuencoded-in-text-attachment"),
])
async def test_an_attachment_the_milter_s_rule_would_refuse_is_refused_at_once(
    client: Client, sender: dict[str, str], mail: Mail, changes: dict[str, Any], field: str
) -> None:
    """Each got a 202, then the milter's 550 (the policy refuses *.exe, *.scr) and a
    failed message."""
    response = await client.post("/api/v1/send-email", json=body(**changes), headers=sender)
    if response.status == 202:
        message = await eventually(lambda: settled(client, sender, response.headers["Location"]))
        pytest.fail(f"accepted, then {message['status']}: {message['last_error']}")
    [detail] = (await response.json())["error"]["details"]
    assert (detail["field"], detail["code"]) == (field, "attachment_not_allowed")


async def delivered_message(client: Client, sender: dict[str, str], mail: Mail,
                            **changes: Any) -> email.message.Message:
    """The message sent with ``changes``, as delivered, read as compat32 reads it."""
    response = await client.post("/api/v1/send-email", json=body(**changes), headers=sender)
    assert response.status == 202, await response.text()
    accepted = await response.json()
    (delivered,) = await eventually(lambda: with_message_id(mail, accepted["message_id"]))
    return email.message_from_bytes(delivered.data, policy=policy.compat32)


async def test_a_long_or_non_ascii_file_name_is_delivered_in_content_type_too(
    client: Client, sender: dict[str, str], mail: Mail
) -> None:
    """Outlook reads no RFC 2231 (filename*0*=) and showed such files as ATT00001.bin."""
    names = ["Quarterly financial report for the board of directors, final version.pdf",
             "Geschäftsbericht über das Quartal.pdf"]
    attachments = [{"filename": name, "content_type": "application/pdf",
                    "content": base64.b64encode(b"%PDF-1.4").decode()} for name in names]
    parsed = await delivered_message(client, sender, mail, attachments=attachments)
    parts = parsed.get_payload()[1:]
    assert [part.get_filename() for part in parts] == names  # RFC 2231, joined
    shown = [part.get_param("name") for part in parts]  # no RFC 2231: a str, not a tuple
    assert [str(email.header.make_header(email.header.decode_header(n))) for n in shown] == names


async def test_an_inline_image_is_delivered_in_a_related_part_the_html_shows(
    client: Client, sender: dict[str, str], mail: Mail
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
    files = [{"filename": "logo.png", "content_type": "image/png", "content_id": "logo@app",
              "content": base64.b64encode(png).decode()},
             {"filename": "r.pdf", "content_type": "application/pdf",
              "content": base64.b64encode(b"%PDF-1.4").decode()}]
    parsed = await delivered_message(client, sender, mail, html='<img src="cid:logo@app">',
                                     attachments=files)
    assert parsed["X-Postwarden-Id"]  # the milter passed it
    alternative, pdf = parsed.get_payload()
    text, related = alternative.get_payload()
    html, image = related.get_payload()
    assert [p.get_content_type() for p in (parsed, alternative, text, related, html, image, pdf)] \
        == ["multipart/mixed", "multipart/alternative", "text/plain", "multipart/related",
            "text/html", "image/png", "application/pdf"]
    assert related.get_param("type") == "text/html"
    assert (image["Content-ID"], image.get_content_disposition()) == ("<logo@app>", "inline")
    assert (image.get_filename(), image.get_payload(decode=True)) == ("logo.png", png)
    assert pdf.get_content_disposition() == "attachment"


async def test_the_same_idempotency_key_delivers_once(
    client: Client, sender: dict[str, str], mail: Mail
) -> None:
    headers = {**sender, "Idempotency-Key": str(uuid.uuid4())}
    request = body()
    first = await client.post("/api/v1/send-email", json=request, headers=headers)
    second = await client.post("/api/v1/send-email", json=request, headers=headers)
    assert (first.status, second.status) == (202, 202)
    message_id = (await first.json())["message_id"]
    await eventually(lambda: with_message_id(mail, message_id))
    await asyncio.sleep(1.5)
    assert len(with_message_id(mail, message_id)) == 1
    assert len([m for m in mail.capture.messages if m.rcpt_tos == tuple(request["to"])]) == 1


async def test_a_hundred_concurrent_sends_against_a_limit_of_forty(
    client: Client, mint_key: MintKey, mail: Mail, set_runtime: SetRuntime
) -> None:
    await set_runtime(outbound_per_key_per_minute=40)
    client.app[RUNTIME].invalidate()
    key = bearer(await mint_key(Role.SENDER, ["*@example.com"]))
    second = dt.datetime.now(dt.UTC).second
    if second > 50:  # one minute window for the whole burst
        await asyncio.sleep(61 - second)
    tag = uuid.uuid4().hex[:12]
    try:
        responses = await asyncio.gather(*(
            client.post("/api/v1/send-email", headers=key,
                        json=body(to=[f"burst{n}-{tag}@example.org"]))
            for n in range(100)
        ))
    finally:
        await set_runtime(outbound_per_key_per_minute=1000)
        client.app[RUNTIME].invalidate()
    statuses = [r.status for r in responses]
    assert statuses.count(202) == 40 and statuses.count(429) == 60

    def burst() -> list[CapturedMessage]:
        return [m for m in mail.capture.messages if any(tag in r for r in m.rcpt_tos)]

    await eventually(lambda: len(burst()) >= 40, within=60)
    await asyncio.sleep(1.5)
    assert len(burst()) == 40


async def test_postfix_down_then_up_delivers_all_twenty_once(
    client: Client, sender: dict[str, str], mail: Mail
) -> None:
    await asyncio.to_thread(mail.postfix.stop)
    try:
        tag = uuid.uuid4().hex[:12]
        responses = [
            await client.post("/api/v1/send-email", headers=sender,
                              json=body(to=[f"down{n}-{tag}@example.org"]))
            for n in range(20)
        ]
        assert [r.status for r in responses] == [202] * 20
        await asyncio.sleep(1.0)
        assert not [m for m in mail.capture.messages if any(tag in r for r in m.rcpt_tos)]
    finally:
        await asyncio.to_thread(mail.postfix.start)

    def arrived() -> list[CapturedMessage]:
        return [m for m in mail.capture.messages if any(tag in r for r in m.rcpt_tos)]

    await eventually(lambda: len(arrived()) >= 20, within=90)
    await asyncio.sleep(2.0)
    recipients = sorted(r for m in arrived() for r in m.rcpt_tos)
    assert recipients == sorted(f"down{n}-{tag}@example.org" for n in range(20))


async def test_a_bounce_fails_the_message_and_suppresses_the_recipient(
    client: Client, sender: dict[str, str], mail: Mail
) -> None:
    address = f"gone-{uuid.uuid4().hex[:8]}@example.org"
    mail.capture.reply_for(address, "550 5.1.1 no such user")
    response = await client.post("/api/v1/send-email", json=body(to=[address]), headers=sender)
    assert response.status == 202
    location = response.headers["Location"]
    message = await eventually(lambda: settled(client, sender, location), within=60)
    assert message["status"] == "failed"
    (recipient,) = message["recipients"]
    assert recipient["status"] == "bounced" and "550 5.1.1" in recipient["detail"]
    again = await client.post("/api/v1/send-email", json=body(to=[address]), headers=sender)
    assert again.status == 422
    assert (await again.json())["error"]["code"] == "recipient_suppressed"


async def test_a_message_the_milter_discards_fails(
    client: Client, sender: dict[str, str], mail: Mail
) -> None:
    """Postfix answers 250 to a discarded message: only its log says it went nowhere."""
    tag = uuid.uuid4().hex[:10]
    response = await client.post("/api/v1/send-email", headers=sender,
                                 json=body(subject=f"[discard-me] {tag}"))
    assert response.status == 202
    message = await eventually(lambda: settled(client, sender, response.headers["Location"]))
    assert message["status"] == "failed"
    assert [(r["status"], r["detail"]) for r in message["recipients"]] == [
        ("failed", "discarded by a milter")]
    assert not [m for m in mail.capture.messages if tag.encode() in m.data]


async def test_a_held_message_deleted_from_the_hold_queue_fails(
    client: Client, sender: dict[str, str], mail: Mail, pool: asyncpg.Pool
) -> None:
    """The hold raises send.held: a client that follows webhooks learns its message waits
    (an endpoint never called: the guard refuses its plain http URL)."""
    await pool.execute(
        "INSERT INTO webhook_endpoints (name, url, url_origin, kind, events) "
        "VALUES ($1, 'http://127.0.0.1:9/', 'http://127.0.0.1:9', 'slack', '{send.held}')",
        f"held-{uuid.uuid4().hex[:6]}")
    response = await client.post("/api/v1/send-email", headers=sender,
                                 json=body(subject="[hold-me] quarterly figures"))
    assert response.status == 202
    location = response.headers["Location"]
    message = await eventually(lambda: last_event(client, sender, location, "held"))
    assert message["status"] == "relayed"
    assert message["events"][-1]["detail"] == "held in Postfix's hold queue by a milter"
    assert message["queue_id"] in mail.postfix.held_queue_ids()
    raised = await pool.fetch(
        "SELECT payload->>'status', payload->>'recipient', payload->>'detail' "
        "FROM webhook_events WHERE type = 'send.held' AND payload->>'id' = $1", message["id"])
    assert [tuple(r) for r in raised] == [("relayed", None, message["events"][-1]["detail"])]
    await asyncio.to_thread(mail.postfix.delete, message["queue_id"])
    message = await eventually(lambda: settled(client, sender, location))
    assert message["status"] == "failed"
    (recipient,) = message["recipients"]
    assert recipient["status"] == "failed"
    assert recipient["detail"].startswith("deleted from Postfix's queue")


def queue_of(postfix: PostfixInstance, queue_id: str) -> str | None:
    """The name of the Postfix queue that holds ``queue_id`` (None: none does)."""
    return next((e["queue_name"] for e in postfix.queue() if e["queue_id"] == queue_id), None)


async def test_a_message_an_administrator_holds_then_releases_shows_both_and_is_delivered(
    client: Client, sender: dict[str, str], mail: Mail
) -> None:
    """postsuper -h, then -H. defer_transports keeps the message queued (deferred, never
    tried) until the administrator has held it, and released it."""
    saved = dict(mail.postfix.main)
    mail.postfix.main["defer_transports"] = "smtp"
    await asyncio.to_thread(mail.postfix.reload)
    try:
        response = await client.post("/api/v1/send-email", headers=sender, json=body())
        assert response.status == 202
        location = response.headers["Location"]
        message = await eventually(lambda: last_event(client, sender, location, "relayed"))
        queue_id = message["queue_id"]
        await eventually(lambda: queue_of(mail.postfix, queue_id) == "deferred")
        await asyncio.to_thread(mail.postfix.hold, queue_id)
        await eventually(lambda: last_event(client, sender, location, "held"))
        await asyncio.to_thread(mail.postfix.release, queue_id)
        await eventually(lambda: last_event(client, sender, location, "released"))
    finally:
        mail.postfix.main.clear()
        mail.postfix.main.update(saved)
        await asyncio.to_thread(mail.postfix.reload)
    message = await eventually(lambda: settled(client, sender, location))
    assert message["status"] == "delivered"
    assert [(e["event"], e["detail"]) for e in message["events"]][-2:] == [
        ("held", "held in Postfix's hold queue by an administrator"),
        ("released", "released from Postfix's hold queue by an administrator")]


async def test_a_message_an_administrator_requeues_is_followed_under_its_new_queue_id(
    client: Client, sender: dict[str, str], mail: Mail
) -> None:
    """postsuper -r: pickup queues it again under a new queue id (orig_id= names the old
    one). defer_transports keeps it queued until it has been requeued; then it bounces."""
    address = f"requeued-{uuid.uuid4().hex[:8]}@example.org"
    saved = dict(mail.postfix.main)
    mail.postfix.main["defer_transports"] = "smtp"
    await asyncio.to_thread(mail.postfix.reload)
    try:
        response = await client.post("/api/v1/send-email", headers=sender,
                                     json=body(to=[address]))
        assert response.status == 202
        location = response.headers["Location"]
        message = await eventually(lambda: last_event(client, sender, location, "relayed"))
        old = message["queue_id"]
        await eventually(lambda: queue_of(mail.postfix, old) == "deferred")
        mail.capture.reply_for(address, "550 5.1.1 no such user")
        await asyncio.to_thread(mail.postfix.requeue, old)
        await asyncio.to_thread(mail.postfix.kick_pickup)
        found = await asyncio.to_thread(mail.postfix.wait_for_log,
                                        rf"(\w+): uid=\d+ from=<[^>]*> orig_id={old}\n")
        new = found.group(1)
        await eventually(lambda: queue_of(mail.postfix, new) == "deferred")
    finally:
        mail.postfix.main.clear()
        mail.postfix.main.update(saved)
        await asyncio.to_thread(mail.postfix.reload)
    await asyncio.to_thread(mail.postfix.flush)
    message = await eventually(lambda: settled(client, sender, location))
    assert (message["status"], message["queue_id"]) == ("failed", new)
    assert [r["status"] for r in message["recipients"]] == ["bounced"]
    again = await client.post("/api/v1/send-email", json=body(to=[address]), headers=sender)
    assert (await again.json())["error"]["code"] == "recipient_suppressed"


async def test_a_message_postfix_gives_up_on_bounces_its_deferred_recipients(
    client: Client, sender: dict[str, str], mail: Mail
) -> None:
    """maximal_queue_lifetime 0: Postfix gives up after the first deferral."""
    later, now = (f"{name}-{uuid.uuid4().hex[:8]}@example.org" for name in ("later", "now"))
    mail.capture.reply_for(later, "450 4.2.0 try later")
    lifetimes = {"maximal_queue_lifetime": "0", "bounce_queue_lifetime": "0"}
    saved = {name: mail.postfix.main.get(name) for name in lifetimes}
    mail.postfix.main.update(lifetimes)
    await asyncio.to_thread(mail.postfix.reload)
    try:
        response = await client.post("/api/v1/send-email", headers=sender,
                                     json=body(to=[later, now]))
        assert response.status == 202
        message = await eventually(lambda: settled(client, sender, response.headers["Location"]))
    finally:
        for name, value in saved.items():
            if value is None:
                del mail.postfix.main[name]
            else:
                mail.postfix.main[name] = value
        await asyncio.to_thread(mail.postfix.reload)
    assert message["status"] == "partially_delivered"
    found = {r["address"]: r for r in message["recipients"]}
    assert found[now]["status"] == "delivered"
    assert found[later]["status"] == "bounced"
    assert found[later]["detail"].startswith("expired in Postfix's queue")
    assert "450 4.2.0 try later" in found[later]["detail"]
    assert [e["event"] for e in found[later]["timeline"]] == ["relayed", "deferred", "bounced"]


def submit_by_hand(port: int, sender: str, recipients: list[str], content: bytes) -> str:
    """One SMTP transaction with the submission listener; Postfix's queue id."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail(sender)
        for recipient in recipients:
            smtp.rcpt(recipient)
        code, reply = smtp.data(content)
    found = re.search(rb"queued as (\w+)", reply)
    assert code == 250 and found is not None
    return found.group(1).decode()


async def test_an_attempt_cut_off_after_postfix_queued_it_is_delivered_once(
    client: Client, pool: asyncpg.Pool, mail: Mail
) -> None:
    """The service died between Postfix's 250 and storing it: the row is left claimed
    and unsettled. Here the cut-off attempt is made by hand for one message; the
    other's never reached Postfix. When their leases end, Postfix's log settles the
    first (not sent again) and the second is sent."""
    tag = uuid.uuid4().hex[:10]
    async with pool.acquire() as conn, conn.transaction():
        queued, lost = [
            (await enqueue(conn, submission(tag, f"{name}-{tag}@example.org"), ROOMY)).id
            for name in ("queued", "lost")
        ]
        await conn.execute(
            "UPDATE outbox SET attempts = 1, unsettled = true, "
            "next_attempt_at = now() + interval '1 hour' WHERE message_id = ANY($1::uuid[])",
            [queued, lost],
        )
    row = await pool.fetchrow("SELECT * FROM outbox WHERE message_id = $1", queued)
    queue_id = await asyncio.to_thread(
        submit_by_hand, mail.submission_port, row["envelope_from"], list(row["recipients"]),
        row["content"],
    )
    # What the follower read in Postfix's log, long before the lease would end.
    await eventually(lambda: pool.fetchval(
        "SELECT committed FROM relay_receipts WHERE message_id = $1 AND queue_id = $2 "
        "AND host = $3", queued, queue_id, MAILLOG_HOST))
    await pool.execute("UPDATE outbox SET next_attempt_at = now() "
                       "WHERE message_id = ANY($1::uuid[])", [queued, lost])
    client.app[SEND].relay.wake()

    async def relayed(message: uuid.UUID) -> Any:
        return await pool.fetchrow("SELECT * FROM outbound_messages WHERE id = $1 "
                                   "AND status <> 'queued'", message)

    first, second = [await eventually(lambda m=m: relayed(m)) for m in (queued, lost)]
    assert first["queue_id"] == queue_id and second["queue_id"] not in (None, queue_id)
    found = await pool.fetch("SELECT message_id FROM outbound_events WHERE event = "
                             "'found_in_log' AND message_id = ANY($1::uuid[])", [queued, lost])
    assert [row["message_id"] for row in found] == [queued]
    for message in (first, second):
        await eventually(lambda message=message: with_message_id(mail, message["message_id"]))
    await asyncio.sleep(2.0)
    assert [len(with_message_id(mail, m["message_id"])) for m in (first, second)] == [1, 1]
    registry = client.app[METRICS].registry
    assert registry.get_sample_value("postwarden_relay_outcomes_total",
                                     {"outcome": "found_queued"}) == 1
    await eventually(lambda: (registry.get_sample_value(
        "postwarden_deliveries_total", {"status": "delivered"}) or 0) >= 2)
