"""Outbound HTTP behind the guard: one checked lookup, SNI/Host of the name, no redirects."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import pytest
from aiohttp import web

from postwarden_admin_api.webhooks.connector import Outcome, open_session, post
from postwarden_admin_api.webhooks.payloads import Request
from postwarden_admin_api.webhooks.ssrf import Guard
from tests.fixtures.ports import free_port

from .conftest import RECEIVER_NAME, StubDns
from .receiver import Receiver, Tls, Trap

LOOPBACK_ALLOWED = Guard.from_cidrs(["127.0.0.0/8"])
PING = Request(b'{"ping":1}', {"content-type": "application/json"})


async def test_https_delivery_uses_sni_and_host_of_the_name(
    receiver: Receiver, tls: Tls, dns: StubDns, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="postwarden_admin_api.webhooks")
    url = f"https://{RECEIVER_NAME}:{receiver.port}/hook"
    async with open_session(LOOPBACK_ALLOWED, 5.0, tls.client, dns) as session:
        outcome = await post(session, LOOPBACK_ALLOWED, url, PING)
    assert outcome.ok, outcome
    assert receiver.sni == [RECEIVER_NAME]
    assert receiver.requests[0].headers["Host"] == f"{RECEIVER_NAME}:{receiver.port}"
    assert receiver.requests[0].body == b'{"ping":1}'
    assert dns.calls == [RECEIVER_NAME]
    assert any(f"allowed {RECEIVER_NAME} -> 127.0.0.1" in r.getMessage() for r in caplog.records)


async def test_loopback_refused_unless_allowed(receiver: Receiver, tls: Tls, dns: StubDns,
                                               caplog: pytest.LogCaptureFixture) -> None:
    url = f"https://{RECEIVER_NAME}:{receiver.port}/hook"
    async with open_session(Guard(), 5.0, tls.client, dns) as session:
        outcome = await post(session, Guard(), url, PING)
    assert not outcome.ok
    assert outcome.error == "url_not_allowed: loopback"
    assert receiver.requests == [] and receiver.sni == []
    assert any("refused: loopback" in r.getMessage() for r in caplog.records)


async def test_rebinding_name_never_reaches_the_private_address(tls: Tls) -> None:
    """First answer "public" (127.0.0.2, allowed here), then private (127.0.0.1)."""
    port = free_port()
    public, trap = Receiver("127.0.0.2", tls), Trap()
    await public.start(port)
    await trap.start("127.0.0.1", port)
    try:
        dns = StubDns({"rebind.example.test": [["127.0.0.2"], ["127.0.0.1"]]})
        guard = Guard.from_cidrs(["127.0.0.2/32"])
        url = f"https://rebind.example.test:{port}/hook"
        async with open_session(guard, 5.0, tls.client, dns) as session:
            first = await post(session, guard, url, PING)
            second = await post(session, guard, url, PING)
        assert first.ok, first
        assert second.error == "url_not_allowed: loopback"
        assert dns.calls == ["rebind.example.test"] * 2  # one lookup per delivery, no more
        assert len(public.requests) == 1
        assert trap.connections == 0
    finally:
        await public.stop()
        await trap.stop()


async def test_answer_mixing_public_and_private_is_refused_whole(tls: Tls) -> None:
    port = free_port()
    public, trap = Receiver("127.0.0.2", tls), Trap()
    await public.start(port)
    await trap.start("127.0.0.1", port)
    try:
        dns = StubDns({"rebind.example.test": [["127.0.0.2", "127.0.0.1"]]})
        guard = Guard.from_cidrs(["127.0.0.2/32"])
        async with open_session(guard, 5.0, tls.client, dns) as session:
            outcome = await post(session, guard, f"https://rebind.example.test:{port}/", PING)
        assert outcome.error == "url_not_allowed: loopback"
        assert public.requests == [] and trap.connections == 0
    finally:
        await public.stop()
        await trap.stop()


async def test_unresolvable_name(tls: Tls) -> None:
    dns = StubDns({})
    async with open_session(LOOPBACK_ALLOWED, 5.0, tls.client, dns) as session:
        outcome = await post(session, LOOPBACK_ALLOWED, "https://nowhere.example.test/", PING)
    assert outcome.error == "url_not_allowed: unresolvable"


async def test_literal_address_checked_before_connecting(tls: Tls) -> None:
    trap = Trap()
    port = free_port()
    await trap.start("127.0.0.1", port)
    try:
        async with open_session(Guard(), 5.0, tls.client, StubDns({})) as session:
            outcome = await post(session, Guard(), f"https://127.0.0.1:{port}/", PING)
        assert outcome.error == "url_not_allowed: loopback"
        assert trap.connections == 0
    finally:
        await trap.stop()


async def test_redirect_is_not_followed(receiver: Receiver, tls: Tls, dns: StubDns) -> None:
    receiver.statuses = [302]
    url = f"https://{RECEIVER_NAME}:{receiver.port}/hook"
    async with open_session(LOOPBACK_ALLOWED, 5.0, tls.client, dns) as session:
        outcome = await post(session, LOOPBACK_ALLOWED, url, PING)
    assert (outcome.status, outcome.error) == (302, "redirect not followed")
    assert len(receiver.requests) == 1


async def test_untrusted_certificate_fails(receiver: Receiver, dns: StubDns) -> None:
    url = f"https://{RECEIVER_NAME}:{receiver.port}/hook"
    async with open_session(LOOPBACK_ALLOWED, 5.0, None, dns) as session:
        outcome = await post(session, LOOPBACK_ALLOWED, url, PING)
    assert not outcome.ok
    assert outcome.error == "tls error (unable to get local issuer certificate)"


async def test_a_tls_error_says_what_tls_refused(receiver: Receiver, tls: Tls) -> None:
    """A certificate for another name, a server that speaks no TLS: the delivery's
    last_error said "tls error" for both (and for an expired certificate, an unknown CA),
    leaving the admin to guess which one to fix."""
    plain = web.AppRunner(web.Application())
    await plain.setup()
    plain_port = free_port()
    await web.TCPSite(plain, "127.0.0.1", plain_port).start()
    dns = StubDns({"other.example.test": [["127.0.0.1"]], RECEIVER_NAME: [["127.0.0.1"]]})
    try:
        async with open_session(LOOPBACK_ALLOWED, 5.0, tls.client, dns) as session:
            wrong_name, no_tls = [
                await post(session, LOOPBACK_ALLOWED, url, PING)
                for url in (f"https://other.example.test:{receiver.port}/hook",
                            f"https://{RECEIVER_NAME}:{plain_port}/hook")]
    finally:
        await plain.cleanup()
    assert wrong_name.error == ("tls error (Hostname mismatch, certificate is not valid for"
                                " 'other.example.test'.)")
    assert no_tls.error == "tls error (wrong version number)"


async def test_a_failed_connection_says_how_it_failed(tls: Tls, dns: StubDns) -> None:
    """Nothing listening, or a listener that resets the connection at once: both were
    "connection failed (ClientConnectorError)", a firewall's refusal and a crashing
    receiver alike."""
    port = free_port()
    url = f"https://{RECEIVER_NAME}:{port}/hook"

    async def reset(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    async with open_session(LOOPBACK_ALLOWED, 5.0, tls.client, dns) as session:
        refused = await post(session, LOOPBACK_ALLOWED, url, PING)
        server = await asyncio.start_server(reset, "127.0.0.1", port)
        try:
            was_reset = await post(session, LOOPBACK_ALLOWED, url, PING)
        finally:
            server.close()
            await server.wait_closed()
    assert refused.error == "connection failed (ClientConnectorError: connection refused)"
    assert was_reset.error == ("connection failed (ClientConnectorError: connection reset by"
                               " peer)")


async def test_total_timeout(receiver: Receiver, tls: Tls, dns: StubDns) -> None:
    """The receiver would answer after 3 s: the 0.5 s total timeout ends the request
    first, as a timeout (had it not, the late answer would be a success). The 30 s
    bound only keeps a hang from stalling the suite; it is no speed claim."""
    receiver.delay_seconds = 3.0
    url = f"https://{RECEIVER_NAME}:{receiver.port}/hook"

    async def deliver() -> Outcome:
        async with open_session(LOOPBACK_ALLOWED, 0.5, tls.client, dns) as session:
            return await post(session, LOOPBACK_ALLOWED, url, PING)

    outcome = await asyncio.wait_for(deliver(), timeout=30)
    assert not outcome.ok and outcome.error == "timeout", outcome


async def test_an_endless_response_body_is_not_read(
    receiver: Receiver, tls: Tls, dns: StubDns
) -> None:
    """An endless answer would run into the total timeout if it were read: it is not."""
    receiver.endless_body = True
    url = f"https://{RECEIVER_NAME}:{receiver.port}/hook"
    async with open_session(LOOPBACK_ALLOWED, 4.0, tls.client, dns) as session:
        outcome = await post(session, LOOPBACK_ALLOWED, url, PING)
    assert outcome.ok, outcome


@pytest.mark.parametrize("answer", ["slow_body_seconds", "cut_body"])
async def test_a_2xx_answer_delivers_whatever_its_body_does(
    receiver: Receiver, tls: Tls, dns: StubDns, answer: str
) -> None:
    """The receiver answered 200 in time, then its body trickled past the 1 s timeout, or
    its connection closed mid-body: the answer is its status. Read to the end, the body
    made it a timeout or a broken connection, and the event went again at every retry,
    then dead, though the receiver had taken it each time."""
    setattr(receiver, answer, 3.0 if answer == "slow_body_seconds" else True)
    url = f"https://{RECEIVER_NAME}:{receiver.port}/hook"
    async with open_session(LOOPBACK_ALLOWED, 1.0, tls.client, dns) as session:
        outcome = await asyncio.wait_for(post(session, LOOPBACK_ALLOWED, url, PING), timeout=30)
    assert outcome == Outcome(200, None)
