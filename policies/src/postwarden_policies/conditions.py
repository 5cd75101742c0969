"""Compiled conditions: what a rule's `when:` becomes after loading.

Every condition is an immutable object compiled once (frozensets, network
lists, RE2 patterns); :meth:`Condition.match` reads a :class:`MatchInput`
built once per message. A match returns the indices of the attachments it
holds for, which ``strip_attachment`` strips: those an ``attachment`` condition
matched, every attachment for a condition not about attachments (so ``not``
too); ``all`` keeps what every child selected and ``any`` unites what its
matching children selected. ``None`` means no match. Domains, addresses and
host names compare in the one form :mod:`.domains` gives them.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .bodytext import LineReadings
from .domains import ascii_domain, caseless, normal_address
from .facts import IpAddress, MessageFacts, MimePart, address_literal, client_ip, verified_name
from .patterns import Pattern

Matched = frozenset[int] | None
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def unmapped(network: IpNetwork) -> IpNetwork:
    """An IPv4-mapped IPv6 network (``::ffff:192.0.2.0/120``, /96 or longer) as its IPv4
    network: the form client addresses take (see facts.client_ip); others as they are."""
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _envelope_address(address: str, origin: str | None) -> str:
    """An envelope address as Postfix delivers it: one without a domain with the
    ``origin`` Postfix appends, when known."""
    normal = normal_address(address)
    if normal and origin and "@" not in normal:
        return f"{normal}@{ascii_domain(origin)}"
    return normal


def _domain(address: str) -> str:
    """The domain of an address; none for a bare local part (Postfix gives it myorigin)."""
    _, at, domain = address.rpartition("@")
    return domain if at else ""


def _host_name(name: str | None) -> str | None:
    return None if name is None else address_literal(name) or ascii_domain(name)


@dataclass(frozen=True, slots=True)
class MatchInput:
    """The facts in the form conditions compare against, computed once per message."""

    facts: MessageFacts
    sender: str
    sender_domain: str
    recipients: tuple[str, ...]
    recipient_domains: tuple[str, ...]  # distinct
    from_address: str | None
    from_domain: str | None
    client_ip: IpAddress | None
    # Host names compare as domains do: the client chooses its HELO, and a trailing
    # dot or a Unicode spelling must not get it past a glob.
    client_name: str | None
    helo: str | None
    subject: str
    attachments: tuple[MimePart, ...]
    every_attachment: frozenset[int]  # what a condition not about attachments selects
    readings: LineReadings = field(default_factory=LineReadings)  # Subject, header values

    @classmethod
    def of(cls, facts: MessageFacts) -> MatchInput:
        envelope = facts.envelope
        sender = _envelope_address(envelope.sender, envelope.origin)
        recipients = tuple(_envelope_address(r, envelope.origin) for r in envelope.recipients)
        header_from = normal_address(facts.from_address) if facts.from_address else None
        return cls(
            facts=facts,
            sender=sender,
            sender_domain=_domain(sender) if sender else "",
            recipients=recipients,
            # Each once: a rule looks at every one (the labels of each, for ".parent"
            # domains), and a thousand recipients often share a few.
            recipient_domains=tuple(dict.fromkeys(_domain(r) for r in recipients)),
            from_address=header_from,
            from_domain=_domain(header_from) if header_from else None,
            client_ip=client_ip(envelope.client_ip),
            client_name=_host_name(verified_name(envelope.client_name)),
            helo=_host_name(envelope.helo),
            subject=facts.subject or "",
            attachments=facts.attachments,
            every_attachment=frozenset(part.index for part in facts.attachments),
        )


class Condition(ABC):
    """A compiled test on one message."""

    @abstractmethod
    def match(self, item: MatchInput) -> Matched: ...


Getter = Callable[[MatchInput], Iterable[str | None]]


def _hit(item: MatchInput, found: bool) -> Matched:
    return item.every_attachment if found else None


class ValueIn(Condition):
    """Any of the values (already lower-case) is in the set."""

    def __init__(self, get: Getter, values: Iterable[str]) -> None:
        self.get = get
        self.values = frozenset(values)

    def match(self, item: MatchInput) -> Matched:
        values = self.get(item)
        return _hit(item, any(value in self.values for value in values if value is not None))


@dataclass(frozen=True, slots=True)
class DomainSet:
    """Exact domains, and parents written ".example.com" / "*.example.com" (subdomains only)."""

    exact: frozenset[str]
    parents: frozenset[str]

    @classmethod
    def of(cls, domains: Iterable[str]) -> DomainSet:
        exact: set[str] = set()
        parents: set[str] = set()
        for domain in domains:  # each as ascii_domain gives it, after any "." or "*." prefix
            bare = domain.removeprefix("*")
            (parents if bare.startswith(".") else exact).add(bare.lstrip("."))
        return cls(frozenset(exact), frozenset(parents))

    def __contains__(self, domain: object) -> bool:
        if not isinstance(domain, str) or not domain:
            return False
        if domain in self.exact:
            return True
        if not self.parents:
            return False
        rest = domain
        while "." in rest:
            rest = rest.partition(".")[2]
            if rest in self.parents:
                return True
        return False


class DomainIn(Condition):
    def __init__(self, get: Getter, domains: DomainSet) -> None:
        self.get = get
        self.domains = domains

    def match(self, item: MatchInput) -> Matched:
        return _hit(item, any(value in self.domains for value in self.get(item)))


class PatternMatch(Condition):
    """Any of the values matches (searches, or fully matches for globs) the pattern."""

    def __init__(self, get: Getter, pattern: Pattern) -> None:
        self.get = get
        self.pattern = pattern

    def match(self, item: MatchInput) -> Matched:
        return _hit(item, any(v is not None and self.pattern.test(v) for v in self.get(item)))


class NetworkIn(Condition):
    def __init__(self, networks: Iterable[IpNetwork]) -> None:
        self.networks = tuple(networks)

    def match(self, item: MatchInput) -> Matched:
        address = item.client_ip
        if address is None:
            return None
        return _hit(item, any(address in network for network in self.networks))


class Predicate(Condition):
    """A yes/no fact (authenticated, has_html, duplicate) compared with the wanted value."""

    def __init__(self, test: Callable[[MatchInput], bool], wanted: bool) -> None:
        self.test = test
        self.wanted = wanted

    def match(self, item: MatchInput) -> Matched:
        return _hit(item, self.test(item) is self.wanted)


class SizeOver(Condition):
    def __init__(self, limit: int) -> None:
        self.limit = limit

    def match(self, item: MatchInput) -> Matched:
        return _hit(item, item.facts.size > self.limit)


class FlagIn(Condition):
    def __init__(self, flags: Iterable[str]) -> None:
        self.flags = frozenset(flags)

    def match(self, item: MatchInput) -> Matched:
        return _hit(item, not self.flags.isdisjoint(item.facts.flags))


class HeaderMatch(Condition):
    """Some value of header ``name`` (case-insensitive) contains a match of the pattern."""

    def __init__(self, name: str, pattern: Pattern) -> None:
        self.name = name.lower()
        self.pattern = pattern

    def match(self, item: MatchInput) -> Matched:
        """As written first; only if no value matched, each as readers read it (a From
        display name "P\u0430ypal" with a Cyrillic a: see bodytext.LineReadings)."""
        values = [h.value for h in item.facts.headers if h.name.lower() == self.name]
        test = self.pattern.test
        return _hit(item, any(map(test, values)) or any(
            test(reading) for value in values for reading in item.readings.of(value)))


def _composed(name: str) -> str:
    """NFC, as globs are compiled: macOS clients send names decomposed (u + U+0308)."""
    return name if name.isascii() else unicodedata.normalize("NFC", name)


@dataclass(frozen=True, slots=True)
class AttachmentTest:
    """The sub-conditions of `attachment:`; each one given must hold for the same part."""

    filename: Pattern | None = None
    content_type: Pattern | None = None
    detected_type: Pattern | None = None
    size_over: int | None = None

    def accepts(self, part: MimePart) -> bool:
        if self.filename is not None and not any(
            map(self.filename.test, map(_composed, part.filenames))
        ):
            return False
        if self.content_type is not None and not self.content_type.test(part.content_type):
            return False
        if self.detected_type is not None and not (
            part.detected_type and self.detected_type.test(part.detected_type)
        ):
            return False
        return self.size_over is None or part.decoded_size > self.size_over


class AttachmentMatch(Condition):
    def __init__(self, test: AttachmentTest) -> None:
        self.test = test

    def match(self, item: MatchInput) -> Matched:
        found = frozenset(part.index for part in item.attachments if self.test.accepts(part))
        return found or None


class AllOf(Condition):
    """True when every child matches; selects the attachments every child selected."""

    def __init__(self, children: Iterable[Condition]) -> None:
        self.children = tuple(children)

    def match(self, item: MatchInput) -> Matched:
        selected = item.every_attachment
        for child in self.children:
            found = child.match(item)
            if found is None:
                return None
            selected = selected & found
        return selected


class AnyOf(Condition):
    """True when one child matches; every matching child contributes its attachments."""

    def __init__(self, children: Iterable[Condition]) -> None:
        self.children = tuple(children)

    def match(self, item: MatchInput) -> Matched:
        selected: Matched = None
        for child in self.children:
            found = child.match(item)
            if found is not None:
                selected = found if selected is None else selected | found
        return selected


class Not(Condition):
    """Negation; like any condition not about attachments, it selects every attachment."""

    def __init__(self, child: Condition) -> None:
        self.child = child

    def match(self, item: MatchInput) -> Matched:
        return _hit(item, self.child.match(item) is None)


ALWAYS = AllOf(())


def get_sender(item: MatchInput) -> tuple[str]:
    return (item.sender,)


def get_sender_domain(item: MatchInput) -> tuple[str]:
    return (item.sender_domain,)


def get_recipients(item: MatchInput) -> tuple[str, ...]:
    return item.recipients


def get_recipient_domains(item: MatchInput) -> tuple[str, ...]:
    return item.recipient_domains


def get_from(item: MatchInput) -> tuple[str | None]:
    return (item.from_address,)


def get_from_domain(item: MatchInput) -> tuple[str | None]:
    return (item.from_domain,)


def get_client_name(item: MatchInput) -> tuple[str | None]:
    return (item.client_name,)


def get_helo(item: MatchInput) -> tuple[str | None]:
    return (item.helo,)


def get_auth_user(item: MatchInput) -> tuple[str | None]:
    user = item.facts.envelope.auth_user
    return (caseless(user) if user is not None else None,)


def get_subject(item: MatchInput) -> Iterator[str]:
    """The Subject as written, then (only if that did not match) as readers read it."""
    yield item.subject
    yield from item.readings.of(item.subject, counted=False)


def get_text(item: MatchInput) -> Iterator[str]:
    """The text as written, then (only if that did not match) as readers show it."""
    yield item.facts.text
    yield from item.facts.renderings


def is_authenticated(item: MatchInput) -> bool:
    return item.facts.envelope.authenticated


def has_html(item: MatchInput) -> bool:
    return item.facts.has_html


def is_duplicate(item: MatchInput) -> bool:
    return item.facts.duplicate


def all_of(conditions: dict[str, Condition]) -> Condition:
    """The conditions of one `when:` mapping, ANDed (a single one stands alone)."""
    children = list(conditions.values())
    return children[0] if len(children) == 1 else AllOf(children)
