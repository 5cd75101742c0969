"""Who is calling: API keys, the development fallback key, the socket peer.

The development fallback key works only where the ``development_key`` setting
turns it on (off by default: on a shared host any local account is a loopback
peer and could mint itself a permanent admin key).

The client address is always the TCP peer of the socket, never a header such
as X-Forwarded-For or Host, which a client controls.

A key whose secret was verified is remembered in process (by SHA-256 of the
whole presented key, never the key itself), so later requests skip the
lookup and the digest comparison. That is safe because a key's id, secret,
role and senders never change after creation; what can change (revocation,
expiry, rotation's shortened expiry) is checked in the database on every
request by :meth:`~.ratelimit.RateLimiter.admit`, so a revoked key is refused
on its very next request, by every instance. Only verified keys are
remembered: a wrong key always costs the full, uniform verification.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections import OrderedDict

from aiohttp import web

from .context import POOL, SETTINGS, Principal, Role
from .errors import ApiError, connection
from .keys import ANY_KEY_EXISTS, verify_key

log = logging.getLogger(__name__)

DEV_FALLBACK_KEY = "dev-admin-key"
DEV_PRINCIPAL = Principal(
    key_id="dev-fallback", owner="dev-fallback", name="dev-admin-key", role=Role.ADMIN,
    is_dev_fallback=True,
)
# The fallback is for a fresh install only: any key ever created, of any role
# (revoked ones too), turns it off (ANY_KEY_EXISTS). Until then, behind a reverse
# proxy on the same host, every client of the proxy is a loopback peer.


class VerifiedKeys:
    """A bounded, least-recently-used memory of verified keys: digest -> principal."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, Principal] = OrderedDict()

    def get(self, digest: bytes) -> Principal | None:
        found = self._entries.get(digest)
        if found is not None:
            self._entries.move_to_end(digest)
        return found

    def put(self, digest: bytes, principal: Principal) -> None:
        self._entries[digest] = principal
        self._entries.move_to_end(digest)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, digest: bytes) -> None:
        self._entries.pop(digest, None)


# Process-wide on purpose: an entry holds nothing a database can revoke (see
# above), so it is right for every app and database this process serves.
VERIFIED = VerifiedKeys()


def unauthenticated() -> ApiError:
    return ApiError(401, "unauthenticated", "a valid API key is required",
                    headers={"WWW-Authenticate": 'Bearer realm="postwarden"'})


def peer_host(peername: object) -> str | None:
    """The host of a transport's ``peername`` (a tuple for TCP), None otherwise."""
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    return None


def is_loopback_peer(peername: object) -> bool:
    host = peer_host(peername)
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def address_group(host: str | None) -> str:
    """The client a failed authentication counts against: an IPv4 address (IPv4-mapped
    ones too), or an IPv6 address's /64. One host holds a whole /64 (SLAAC, privacy
    addresses) and could take a fresh address for every guess."""
    if host is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # a zone id names our link
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _peername(request: web.Request) -> object:
    transport = request.transport
    return transport.get_extra_info("peername") if transport is not None else None


def client_address(request: web.Request) -> str | None:
    return peer_host(_peername(request))


def presented_key(request: web.Request) -> str | None:
    for name in ("Authorization", "X-Api-Key"):
        if len(request.headers.getall(name, ())) > 1:
            # A proxy in front may check another copy than the one read here.
            raise ApiError(400, "bad_request", f"{name} given more than once")
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    other = request.headers.get("X-Api-Key") or None
    if scheme.lower() == "bearer" and value.strip():
        key: str | None = value.strip()
        if other is not None and other.strip() != key:
            # One was read and the other dropped unseen, as with a copy given twice.
            raise ApiError(400, "bad_request", "Authorization and X-Api-Key name two "
                           "different keys: send one")
    else:
        key = other
    # Our keys are ASCII. aiohttp keeps a header's other bytes as surrogates, which
    # no encoder takes: such a key is just a wrong one (401, counted as a failure).
    return key.encode("ascii", "replace").decode() if key is not None else None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def forget_presented_key(request: web.Request) -> None:
    """Drop the request's key from the memory of verified keys (it was found inactive)."""
    key = presented_key(request)
    if key is not None:
        VERIFIED.forget(_digest(key))


def is_remembered(request: web.Request) -> bool:
    """Whether the request's key was verified before: only its owner can present it."""
    key = presented_key(request)
    return key is not None and VERIFIED.get(_digest(key)) is not None


async def authenticate(request: web.Request) -> Principal:
    """The principal of a valid key; :func:`unauthenticated` for anything else.

    A stored key's liveness is not checked here but by the admission
    statement that follows (see the module docstring).
    """
    key = presented_key(request)
    if key is None:
        raise unauthenticated()
    digest = _digest(key)
    remembered = VERIFIED.get(digest)
    if remembered is not None:
        return remembered
    pool = request.app[POOL]
    async with connection(pool) as conn:
        if key == DEV_FALLBACK_KEY and request.app[SETTINGS].development_key:
            if is_loopback_peer(_peername(request)) and not await conn.fetchval(ANY_KEY_EXISTS):
                log.warning(
                    "development fallback key used from %s: create an admin key "
                    "(postwarden-admin keys create --role admin) to disable it",
                    client_address(request),
                )
                return DEV_PRINCIPAL
            raise unauthenticated()
        found = await verify_key(conn, key)
    if found is None:
        raise unauthenticated()
    VERIFIED.put(digest, found)
    return found
