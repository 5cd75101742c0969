"""The SSRF guard: which outbound webhook URLs and addresses may be reached.

Two layers, both pure:

* :meth:`Guard.check_url` refuses a URL on its face: a scheme other than
  https, user information, a missing or malformed host, reserved names
  (``localhost``, ``*.localhost``, ``*.local``, ``*.internal``, single-label
  names that resolver search domains would expand) and literal addresses in
  any spelling (decimal, octal, hex and short IPv4 forms are normalised the
  way ``inet_aton`` reads them, so ``0x7f.1`` is 127.0.0.1; such a spelling of
  an address not blocked is refused as malformed: aiohttp connects only to an
  IPv4 address written a.b.c.d), as are an IPv6 zone id (aiohttp passes it on
  still percent-encoded) and port 0, which nothing can connect to.
* :meth:`Guard.check_address` refuses an address in a blocked range, including
  IPv4 embedded in IPv6 (mapped, compatible, 6to4, NAT64) of a blocked range.

The URL is parsed with yarl, the parser aiohttp itself uses, so the host we
check is the host aiohttp connects to. Admins may allow named networks (an
internal receiver); nothing is allowed by default. Every refusal is logged
with its reason.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from yarl import URL

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Reason(enum.StrEnum):
    """Why a URL or address is refused; stable strings shown to API clients."""

    SCHEME = "scheme_not_https"
    USERINFO = "userinfo_present"
    HOST_MISSING = "host_missing"
    HOST_INVALID = "host_invalid"
    RESERVED_NAME = "reserved_name"
    UNSPECIFIED = "unspecified"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    CGNAT = "cgnat"
    LINK_LOCAL = "link_local"
    UNIQUE_LOCAL = "unique_local"
    MULTICAST = "multicast"
    RESERVED = "reserved"
    UNRESOLVABLE = "unresolvable"


class UrlRefused(Exception):
    """The guard refused a URL or an address; ``reason`` is a :class:`Reason`."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Checked in order; the first match names the reason.
_V4_BLOCKED: tuple[tuple[Reason, tuple[IPNetwork, ...]], ...] = (
    (Reason.UNSPECIFIED, _nets("0.0.0.0/8")),
    (Reason.LOOPBACK, _nets("127.0.0.0/8")),
    (Reason.PRIVATE, _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")),
    (Reason.CGNAT, _nets("100.64.0.0/10")),
    (Reason.LINK_LOCAL, _nets("169.254.0.0/16")),  # 169.254.169.254: cloud metadata
    (Reason.MULTICAST, _nets("224.0.0.0/4")),
    (
        Reason.RESERVED,
        _nets(
            "192.0.0.0/24",  # IETF protocol assignments
            "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",  # documentation
            "192.88.99.0/24",  # 6to4 relay anycast
            "198.18.0.0/15",  # benchmarking
            "240.0.0.0/4",  # future use and 255.255.255.255
        ),
    ),
)
_V6_BLOCKED: tuple[tuple[Reason, tuple[IPNetwork, ...]], ...] = (
    (Reason.UNSPECIFIED, _nets("::/128")),
    (Reason.LOOPBACK, _nets("::1/128")),
    (Reason.UNIQUE_LOCAL, _nets("fc00::/7")),  # fd00:ec2::254: cloud metadata
    (Reason.LINK_LOCAL, _nets("fe80::/10")),
    (Reason.MULTICAST, _nets("ff00::/8")),
    (
        Reason.RESERVED,
        _nets(
            "2001::/32",  # Teredo: the embedded client address is obfuscated
            "2001:db8::/32", "3fff::/20",  # documentation
            "2001:2::/48", "2001:10::/28", "2001:20::/28",  # benchmarking, ORCHID
            "64:ff9b:1::/48",  # local-use NAT64
        ),
    ),
)
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")

_RESERVED_SUFFIXES = (".localhost", ".local", ".internal")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")
_NUMBER = re.compile(r"^(0x[0-9a-f]*|[0-9]+)\Z")


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Read ``host`` the way ``inet_aton`` does (1 to 4 parts, octal/hex/decimal).

    Returns None when ``host`` is not numeric; raises :class:`UrlRefused` when
    it looks numeric but no resolver would read it as one address.
    """
    parts = host.split(".")
    if not _NUMBER.match(parts[-1]):
        return None
    try:
        numbers = [_parse_number(part) for part in parts]
    except ValueError:
        raise UrlRefused(Reason.HOST_INVALID, f"{host!r} is a malformed IPv4 address") from None
    if len(numbers) > 4 or any(n > 255 for n in numbers[:-1]):
        raise UrlRefused(Reason.HOST_INVALID, f"{host!r} is a malformed IPv4 address")
    last_bits = 8 * (5 - len(numbers))
    if numbers[-1] >= 1 << last_bits:
        raise UrlRefused(Reason.HOST_INVALID, f"{host!r} is a malformed IPv4 address")
    value = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        value |= number << (24 - 8 * index)
    return ipaddress.IPv4Address(value)


def _parse_number(part: str) -> int:
    if part.startswith("0x"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)
    return int(part, 10)


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address carried inside an IPv6 one (mapped, 6to4, NAT64, compatible)."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64:
        return "NAT64", low32
    if address in _COMPAT and int(address) > 1:
        return "IPv4-compatible", low32
    return None


def _blocked_v4(address: ipaddress.IPv4Address) -> Reason | None:
    for reason, networks in _V4_BLOCKED:
        if any(address in network for network in networks):
            return reason
    return None


def _blocked_v6(address: ipaddress.IPv6Address) -> Reason | None:
    for reason, networks in _V6_BLOCKED:
        if any(address in network for network in networks):
            return reason
    return None if address in _GLOBAL_UNICAST_V6 else Reason.RESERVED


@dataclass(frozen=True, slots=True)
class Guard:
    """The guard with the admin's allowed networks (none by default)."""

    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> Guard:
        return cls(tuple(ipaddress.ip_network(c, strict=False) for c in cidrs))

    def _allowed(self, address: IPAddress) -> bool:
        return any(
            address.version == net.version and address in net for net in self.allowed_networks
        )

    def check_address(self, address: IPAddress) -> None:
        """Raise :class:`UrlRefused` unless ``address`` may be connected to."""
        if self._allowed(address):
            return
        if isinstance(address, ipaddress.IPv4Address):
            reason = _blocked_v4(address)
            if reason is not None:
                raise _refused(reason, f"{address} is {reason.value}")
            return
        embedded = embedded_ipv4(address)
        if embedded is not None:
            form, inner = embedded
            if self._allowed(inner):
                return
            reason = _blocked_v4(inner)
            if reason is not None:
                raise _refused(reason, f"{address} is {form} of {inner} ({reason.value})")
            if address in _NAT64:
                return  # DNS64's answer for an IPv4-only name: the translator reaches inner
        reason = _blocked_v6(address)
        if reason is not None:
            raise _refused(reason, f"{address} is {reason.value}")

    def check_url(self, url: str) -> URL:
        """Parse and check ``url`` on its face; returns the parsed URL.

        A host name passes here; its addresses are checked at every connection
        by :mod:`.connector`.
        """
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            raise _refused(Reason.HOST_INVALID, "the URL cannot be parsed") from None
        if parsed.scheme != "https":
            raise _refused(Reason.SCHEME, "only https URLs are allowed")
        if parsed.raw_user is not None or parsed.raw_password is not None:
            raise _refused(Reason.USERINFO, "user information in the URL is not allowed")
        host = parsed.raw_host
        if not host:
            raise _refused(Reason.HOST_MISSING, "the URL has no host")
        address = host_address(host)
        if address is not None:
            self.check_address(address)
            check_spelling(host, address)
        else:
            check_name(host)
        if parsed.port == 0:  # no connection can be made to it: every delivery would fail
            raise _refused(Reason.HOST_INVALID, "port 0 cannot be connected to")
        return parsed


def host_address(host: str) -> IPAddress | None:
    """The address a literal host names (any IPv4 spelling, IPv6), else None."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise _refused(Reason.HOST_INVALID, f"{host!r} is a malformed IPv6 address") from None
    return parse_ipv4(host.rstrip(".").lower())


def check_spelling(host: str, address: IPAddress) -> None:
    """Refuse an address written so aiohttp cannot connect to it, so every delivery to
    it would fail: IPv4 not as a.b.c.d (``127.1``, ``0x08080808``), IPv6 with a zone id
    (aiohttp hands the system the zone as written in the URL: ``%25eth0`` is the zone
    ``25eth0``, no interface, and ``%251`` interface 251)."""
    if address.version == 4 and host != str(address):
        raise _refused(Reason.HOST_INVALID, f"{host!r} is {address} written another way:"
                       f" write it as {address}")
    if "%" in host:
        raise _refused(Reason.HOST_INVALID, f"{host!r} has a zone id, which cannot be"
                       f" connected to: write it as {address}")


def check_name(host: str) -> None:
    """Refuse reserved and malformed host names (``host`` in ASCII/punycode form)."""
    name = host.lower()
    name = name[:-1] if name.endswith(".") else name
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise _refused(Reason.HOST_INVALID, f"{host!r} is not a valid host name")
    if name == "localhost" or name.endswith(_RESERVED_SUFFIXES):
        raise _refused(Reason.RESERVED_NAME, f"{name!r} is a reserved local name")
    if len(labels) < 2:
        raise _refused(Reason.RESERVED_NAME, f"{name!r} is a single-label (local) name")


def _refused(reason: Reason, detail: str) -> UrlRefused:
    log.warning("ssrf guard refused: %s (%s)", reason.value, detail)
    return UrlRefused(reason, detail)
