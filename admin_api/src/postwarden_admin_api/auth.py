"""Who is calling: API keys, the development fallback key, the socket peer.

The client address is always the TCP peer of the socket, never a header such
as X-Forwarded-For or Host, which a client controls.
"""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web

from .context import POOL, Principal, Role
from .errors import ApiError
from .keys import admin_key_exists, verify_key

log = logging.getLogger(__name__)

DEV_FALLBACK_KEY = "dev-admin-key"
DEV_PRINCIPAL = Principal(
    key_id="dev-fallback", name="dev-admin-key", role=Role.ADMIN, is_dev_fallback=True
)


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


def _peername(request: web.Request) -> object:
    transport = request.transport
    return transport.get_extra_info("peername") if transport is not None else None


def client_address(request: web.Request) -> str | None:
    return peer_host(_peername(request))


def presented_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-Api-Key") or None


async def authenticate(request: web.Request) -> Principal:
    """The principal of a valid key; :func:`unauthenticated` for anything else."""
    key = presented_key(request)
    if key is None:
        raise unauthenticated()
    pool = request.app[POOL]
    async with pool.acquire() as conn:
        if key == DEV_FALLBACK_KEY:
            if is_loopback_peer(_peername(request)) and not await admin_key_exists(conn):
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
    return found
