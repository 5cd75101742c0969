"""A local HTTPS webhook receiver for tests, with a certificate made on the fly.

``make_tls(names)`` creates a throwaway CA and a server certificate for
``names``; the client context trusts only that CA. ``Receiver`` is an aiohttp
server on a loopback address that records every request (headers, body, the
SNI name the client sent) and answers with queued status codes (200 once the
queue is empty).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fixtures.ports import free_port


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls(names: list[str]) -> Tls:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("postwarden test CA"))
        .issuer_name(_name("postwarden test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(
        cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    )
    return Tls(server, client)


@dataclass
class Received:
    path: str  # path and query, as the client sent them
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered


@dataclass
class Receiver:
    host: str
    tls: Tls
    statuses: list[int] = field(default_factory=list)  # answered in order, then 200
    requests: list[Received] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    delay_seconds: float = 0.0  # wait this long before answering
    endless_body: bool = False  # answer 200 with a body that never ends (bounded: ~60 s)
    slow_body_seconds: float = 0.0  # answer 200, then a byte of body every 0.1 s this long
    cut_body: bool = False  # answer 200, then close the connection mid-body
    retry_after: str | None = None  # the Retry-After header of every non-2xx answer
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        status = self.statuses.pop(0) if self.statuses else 200
        body = await request.read()
        self.requests.append(Received(request.raw_path, dict(request.headers), body, status))
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.endless_body:
            return await self._endless(request)
        if self.slow_body_seconds:
            return await self._slow(request)
        if self.cut_body:
            return await self._cut(request)
        if 300 <= status < 400:
            return web.Response(status=status, headers={"Location": "https://127.0.0.1/"})
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        return web.Response(status=status, text="ok" if status < 300 else "no", headers=headers)

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"x" * 65536
        for _ in range(6000):
            try:
                await response.write(chunk)
            except ConnectionError:
                break
            await asyncio.sleep(0.01)
        return response

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(round(self.slow_body_seconds * 10)):
            try:
                await response.write(b"x")
            except ConnectionError:
                break
            await asyncio.sleep(0.1)
        return response

    async def _cut(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"x" * 10)
        assert request.transport is not None
        request.transport.close()
        return response

    async def start(self, port: int | None = None) -> None:
        def record_sni(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            self.sni.append(name)

        self.tls.server.sni_callback = record_sni
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = port or free_port()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls.server)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def delivered(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]


class Trap:
    """A listener that only counts connections: nothing may ever reach it."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        async def accept(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(accept, host, port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def wait_for(predicate: Callable[[], object], seconds: float = 15.0) -> bool:
    """Poll ``predicate`` every 50 ms until it is true or ``seconds`` pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


async def wait_for_async(check: Callable[[], Awaitable[bool]], seconds: float = 15.0) -> bool:
    """Like :func:`wait_for` for a coroutine function (a database query)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()
