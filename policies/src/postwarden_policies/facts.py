"""Message facts: everything the engine may look at, gathered from bytes.

The milter fills an :class:`Envelope` from its callbacks; the MIME parser
(:func:`postwarden_policies.mimeparse.parse_message`) turns the raw message
into :class:`MessageFacts`. Facts never hold decoded bodies of attachments:
parts are byte ranges into ``raw`` so rewriting can splice untouched parts
back byte for byte.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Types Thunderbird replaces with the type its file name says (mime_create), and
# the extensions it maps to text/html.
_TYPED_BY_NAME = frozenset({"application/octet-stream", "application/x-unknown-content-type"})
_HTML_EXTENSIONS = (".html", ".htm", ".shtml", ".ehtml")
# What a part carries encoded and the parser lists below it (MimePart.in_decoded): the
# content of S/MIME signed data, or the message of a base64 or QP message/global.
DecodedKind = Literal["signed_data", "encoded_message"]


def client_ip(value: str | None) -> IpAddress | None:
    """The client address as an IP, or None ("unknown" and the like).

    Brackets and an ``IPv6:`` tag, as Postfix may write them, are dropped, and
    an IPv4-mapped IPv6 address is the IPv4 address: rules and audit rows see
    one form.
    """
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip("[]").removeprefix("IPv6:"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_literal(value: str) -> str | None:
    """An SMTP address literal, as a HELO may be (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``),
    in one form (lower case, the address as ipaddress writes it); None for other text."""
    if not (value.startswith("[") and value.endswith("]")):
        return None
    inner = value[1:-1]
    tag = "ipv6:" if inner[:5].lower() == "ipv6:" else ""
    try:
        address = ipaddress.ip_address(inner[len(tag):])
    except ValueError:
        return None
    # RFC 5321: an IPv6 literal carries its tag, an IPv4 one none.
    return f"[{tag}{address}]" if (address.version == 6) == bool(tag) else None


def verified_name(hostname: str | None) -> str | None:
    """The client's verified reverse name; None for a client without one, which Postfix
    calls "unknown" and passes to milters as its address in brackets (libmilter's
    ``[192.0.2.1]``): no host name, so no ``client_name`` glob, even ``*``, holds for it."""
    if not hostname or hostname.startswith("[") or hostname == "unknown":
        return None
    return hostname


def client_ip_text(value: str) -> str:
    """``value`` as the milter reads a client's address, in :func:`client_ip`'s one form
    (``[192.0.2.1]`` and ``::ffff:192.0.2.1`` are ``192.0.2.1``).

    For an address written by hand (``eval --client-ip``, a `tests:` case): ValueError
    when the milter would read no address in it, as that matches no ``client_ip``
    network and a verdict would hold for the wrong reason.
    """
    address = client_ip(value)
    if address is None:
        raise ValueError(f"expected an IPv4 or IPv6 address, got {value!r}")
    return str(address)


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str = ""  # envelope MAIL FROM, "" for the null sender
    recipients: tuple[str, ...] = ()
    client_ip: str | None = None
    client_name: str | None = None
    helo: str | None = None
    auth_user: str | None = None  # SASL login name; None when not authenticated
    queue_id: str | None = None  # Postfix queue id (milter macro i)
    # The domain Postfix gives an address without one (its myorigin: MAIL FROM:<dave> goes
    # out from dave@<origin>), as the milter's {mail_addr}/{rcpt_addr} macros show; None:
    # not known, such an address has no domain for rules.
    origin: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.auth_user is not None


@dataclass(frozen=True, slots=True)
class Header:
    name: str  # as written
    raw_value: str  # undecoded, unfolded value (surrogateescape for 8-bit bytes)
    value: str  # RFC 2047 decoded for display and matching
    folded: bool = False  # written on several lines (a Subject prefix keeps the folding)
    # Written after a lone CR, which ends a line to readers, not to Postfix: to it, the
    # field is text of the one before, which its header indexes count instead.
    inline: bool = False


@dataclass(frozen=True, slots=True)
class MimePart:
    index: int  # position in MessageFacts.parts (depth-first order)
    path: str  # "1", "1.2", ... ("" for the top-level entity)
    depth: int
    parent: int | None
    content_type: str  # lower-case "type/subtype"; "text/plain" when missing
    charset: str | None
    transfer_encoding: str  # lower-case; "7bit" when missing
    disposition: str | None  # "attachment" | "inline" | None
    filename: str | None  # decoded (RFC 2231 and RFC 2047)
    is_multipart: bool
    is_attachment: bool  # a leaf part that is not message text
    header_start: int  # offsets into MessageFacts.raw
    body_start: int
    body_end: int
    encoded_size: int
    decoded_size: int
    detected_type: str | None  # from the content's magic bytes, None when unknown
    # Inside a well-formed multipart/signed, multipart/encrypted or S/MIME structure.
    in_signed: bool = False
    # Every name a mail reader might show (filename, name, RFC 2231 forms,
    # repeats, Content-Name), ``filename`` first; attachment rules test them all.
    filenames: tuple[str, ...] = ()
    # A file inside its parent part's content, not a MIME entity of its own:
    # uuencoded (yEncoded, BinHexed) in its text, or inside its TNEF (winmail.dat).
    # Rules see it as an attachment; it cannot be stripped or sanitized apart from its
    # carrier, except a TNEF's files (see tnefrewrite).
    uuencoded: bool = False
    # Inside content a part carries encoded, listed below it, and of what kind that
    # carrier is (the nearest one): its offsets are the body of the outermost carrier,
    # whose encoded bytes hold it and cannot be rewritten piecewise. None: in the message.
    in_decoded: DecodedKind | None = None

    @property
    def is_html(self) -> bool:
        """Whether mail readers may render the part as HTML, so it is sanitized as HTML.

        Besides text/html, that is an octet-stream part not marked as an
        attachment whose name ends in ``.html`` (or the like): Thunderbird
        takes its type from the name and shows it inline.
        """
        return self.content_type == "text/html" or (
            self.content_type in _TYPED_BY_NAME
            and self.disposition != "attachment"
            and any(name.lower().endswith(_HTML_EXTENSIONS) for name in self.filenames)
        )


@dataclass(frozen=True, slots=True)
class MessageFacts:
    envelope: Envelope
    raw: bytes
    body_offset: int  # where the body begins in raw (after the blank line)
    headers: tuple[Header, ...]
    parts: tuple[MimePart, ...]
    from_address: str | None
    subject: str | None
    message_id: str | None
    size: int
    flags: frozenset[str] = frozenset()  # "malformed", "too_deep", "too_many_parts", ...
    duplicate: bool = False  # set by the milter's duplicate detector
    newline: bytes = b"\r\n"  # the message's own line ending, kept by rewrites
    text: str = field(default="", repr=False)  # decoded text and HTML parts, for body regexes
    # Those parts as readers show them (HTML rendered, flowed text unwrapped), where that
    # differs: bodytext.Renderings, worked out on the first body rule that reads them.
    renderings: Iterable[str] = field(default=(), repr=False, compare=False)

    def header_values(self, name: str) -> tuple[str, ...]:
        wanted = name.lower()
        return tuple(h.value for h in self.headers if h.name.lower() == wanted)

    @property
    def has_html(self) -> bool:
        return any(p.is_html for p in self.parts)

    @property
    def attachments(self) -> tuple[MimePart, ...]:
        return tuple(p for p in self.parts if p.is_attachment)
