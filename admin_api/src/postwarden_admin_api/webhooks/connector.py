"""Outbound HTTP for deliveries, behind the SSRF guard.

aiohttp asks its resolver for the addresses of a host name once per
connection and connects to exactly the addresses it gets back, keeping the
original name for SNI, certificate checks and the Host header. The
:class:`GuardedResolver` looks the name up once, checks *every* address and
returns them only if all pass, so a DNS answer cannot mix a private address
in and a second lookup (DNS rebinding) cannot happen. Literal addresses never
reach a resolver; :func:`post` checks them with the URL before each request.

No redirects are followed, proxies from the environment are ignored, and every
request has connect and total timeouts. The answer is the response's status: its
body is never read (a body that trickles past the timeout or breaks off must not
fail a delivery the receiver has taken).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import errno
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from .payloads import Request
from .ssrf import Guard, IPAddress, Reason, UrlRefused, check_name

log = logging.getLogger(__name__)

Lookup = Callable[[str, int], Awaitable[list[IPAddress]]]


async def system_lookup(host: str, port: int) -> list[IPAddress]:
    """One getaddrinfo call: every address the name resolves to."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


class GuardedResolver(AbstractResolver):
    """Resolve once, refuse the name if any address is refused, return the checked ones."""

    def __init__(self, guard: Guard, lookup: Lookup = system_lookup) -> None:
        self._guard = guard
        self._lookup = lookup

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        check_name(host)
        try:
            addresses = await self._lookup(host, port)
        except OSError:
            addresses = []
        if not addresses:
            log.warning("ssrf guard refused: %s (%s does not resolve)", Reason.UNRESOLVABLE, host)
            raise UrlRefused(Reason.UNRESOLVABLE, f"{host!r} does not resolve")
        for address in addresses:
            self._guard.check_address(address)
        log.info("ssrf guard allowed %s -> %s", host, ", ".join(map(str, addresses)))
        return [_result(host, address, port) for address in dict.fromkeys(addresses)
                if family in (socket.AF_UNSPEC, _family(address))]

    async def close(self) -> None:
        return None


def _family(address: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def _result(host: str, address: IPAddress, port: int) -> ResolveResult:
    return ResolveResult(
        hostname=host, host=str(address), port=port, family=_family(address),
        proto=0, flags=socket.AI_NUMERICHOST,
    )


def open_session(
    guard: Guard,
    timeout_seconds: float,
    ssl_context: ssl.SSLContext | None = None,
    lookup: Lookup = system_lookup,
) -> aiohttp.ClientSession:
    """A client session whose every connection goes through the guard."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(guard, lookup),
        use_dns_cache=False,
        force_close=True,  # a fresh, checked lookup for every delivery
        ssl=ssl_context or ssl.create_default_context(),
    )
    timeout = aiohttp.ClientTimeout(
        total=timeout_seconds, sock_connect=min(timeout_seconds, 5.0)
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        trust_env=False,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int | None  # HTTP status, None when no response came
    error: str | None  # short, client-safe description of a failure
    retry_after: float | None = None  # seconds a failed answer's Retry-After asked for

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _tls_error(exc: aiohttp.ClientSSLError) -> str:
    """What TLS refused, as OpenSSL names it (an expired certificate, a name it does not
    cover, a server that speaks no TLS): a bare "tls error" left an admin guessing. The
    exception's own text is not used: it quotes the connection, not only the origin."""
    cause = exc.certificate_error if isinstance(
        exc, aiohttp.ClientConnectorCertificateError) else exc.os_error
    detail = getattr(cause, "verify_message", None) or getattr(cause, "reason", None)
    if not isinstance(detail, str) or not detail:
        return "tls error"
    return f"tls error ({detail.replace('_', ' ').lower() if detail.isupper() else detail})"


# A socket's failures worth naming. Only these: OpenSSL's error codes share the field
# (1, SSL_ERROR_SSL, would read as "operation not permitted").
_SOCKET_ERRORS = frozenset({
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL,
})


def _connection_error(exc: Exception) -> str:
    """The exception's type and, for a socket's failure, what the system said (refused,
    reset, unreachable): the type alone named a refused connection and a reset one alike.
    Not the exception's text: it quotes the address and port."""
    code = exc.errno if isinstance(exc, OSError) else None
    if code not in _SOCKET_ERRORS:
        return type(exc).__name__
    return f"{type(exc).__name__}: {os.strerror(code).lower()}"


async def post(
    session: aiohttp.ClientSession, guard: Guard, url: str, request: Request
) -> Outcome:
    """POST one delivery; never raises for network or guard failures."""
    try:
        parsed = guard.check_url(url)
        async with session.post(
            parsed, data=request.body, headers=request.headers, allow_redirects=False
        ) as response:
            status = response.status
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    except UrlRefused as refused:
        return Outcome(None, f"url_not_allowed: {refused.reason.value}")
    except TimeoutError:
        return Outcome(None, "timeout")
    except aiohttp.ClientSSLError as exc:
        return Outcome(None, _tls_error(exc))
    except (aiohttp.ClientError, OSError) as exc:
        return Outcome(None, f"connection failed ({_connection_error(exc)})")
    if 200 <= status < 300:
        return Outcome(status, None)
    error = "redirect not followed" if 300 <= status < 400 else f"HTTP {status}"
    return Outcome(status, error, retry_after)


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for (seconds, or an HTTP date), at least 0;
    None when there is none or it cannot be read."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as an HTTP date always is
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())
