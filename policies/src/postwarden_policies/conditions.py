"""Compiled conditions: what a rule's `when:` becomes after loading.

Every condition is an immutable object compiled once (frozensets, network
lists, RE2 patterns); :meth:`Condition.match` reads a :class:`MatchInput`
built once per message. A match returns the indices of the attachments that
matched (empty when the condition is not about attachments) so that
``strip_attachment`` knows which parts to strip; ``None`` means no match.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .facts import IpAddress, MessageFacts, MimePart, client_ip
from .patterns import Pattern

Matched = frozenset[int] | None
NOTHING: frozenset[int] = frozenset()
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def _address(value: str) -> str:
    """Lower-case address without angle brackets; "" stays the null sender."""
    return value.strip().strip("<>").lower()


@dataclass(frozen=True, slots=True)
class MatchInput:
    """The facts in the form conditions compare against, computed once per message."""

    facts: MessageFacts
    sender: str
    sender_domain: str
    recipients: tuple[str, ...]
    recipient_domains: tuple[str, ...]
    from_address: str | None
    from_domain: str | None
    client_ip: IpAddress | None
    subject: str
    attachments: tuple[MimePart, ...]

    @classmethod
    def of(cls, facts: MessageFacts) -> MatchInput:
        envelope = facts.envelope
        sender = _address(envelope.sender)
        recipients = tuple(_address(r) for r in envelope.recipients)
        header_from = _address(facts.from_address) if facts.from_address else None
        return cls(
            facts=facts,
            sender=sender,
            sender_domain=_domain(sender) if sender else "",
            recipients=recipients,
            recipient_domains=tuple(_domain(r) for r in recipients),
            from_address=header_from,
            from_domain=_domain(header_from) if header_from else None,
            client_ip=client_ip(envelope.client_ip),
            subject=facts.subject or "",
            attachments=facts.attachments,
        )


class Condition(ABC):
    """A compiled test on one message."""

    # True when a positive match may name attachments (so strip_attachment strips those).
    selects_attachments = False

    @abstractmethod
    def match(self, item: MatchInput) -> Matched: ...


Getter = Callable[[MatchInput], Iterable[str | None]]


def _hit(found: bool) -> Matched:
    return NOTHING if found else None


class ValueIn(Condition):
    """Any of the values (already lower-case) is in the set."""

    def __init__(self, get: Getter, values: Iterable[str]) -> None:
        self.get = get
        self.values = frozenset(values)

    def match(self, item: MatchInput) -> Matched:
        return _hit(any(value in self.values for value in self.get(item) if value is not None))


@dataclass(frozen=True, slots=True)
class DomainSet:
    """Exact domains, and parents written ".example.com" / "*.example.com" (subdomains only)."""

    exact: frozenset[str]
    parents: frozenset[str]

    @classmethod
    def of(cls, domains: Iterable[str]) -> DomainSet:
        exact: set[str] = set()
        parents: set[str] = set()
        for domain in domains:
            bare = domain.lower().removeprefix("*").rstrip(".")
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
        return _hit(any(value in self.domains for value in self.get(item)))


class PatternMatch(Condition):
    """Any of the values matches (searches, or fully matches for globs) the pattern."""

    def __init__(self, get: Getter, pattern: Pattern) -> None:
        self.get = get
        self.pattern = pattern

    def match(self, item: MatchInput) -> Matched:
        return _hit(any(v is not None and self.pattern.test(v) for v in self.get(item)))


class NetworkIn(Condition):
    def __init__(self, networks: Iterable[IpNetwork]) -> None:
        self.networks = tuple(networks)

    def match(self, item: MatchInput) -> Matched:
        address = item.client_ip
        if address is None:
            return None
        return _hit(any(address in network for network in self.networks))


class Predicate(Condition):
    """A yes/no fact (authenticated, has_html, duplicate) compared with the wanted value."""

    def __init__(self, test: Callable[[MatchInput], bool], wanted: bool) -> None:
        self.test = test
        self.wanted = wanted

    def match(self, item: MatchInput) -> Matched:
        return _hit(self.test(item) is self.wanted)


class SizeOver(Condition):
    def __init__(self, limit: int) -> None:
        self.limit = limit

    def match(self, item: MatchInput) -> Matched:
        return _hit(item.facts.size > self.limit)


class FlagIn(Condition):
    def __init__(self, flags: Iterable[str]) -> None:
        self.flags = frozenset(flags)

    def match(self, item: MatchInput) -> Matched:
        return _hit(not self.flags.isdisjoint(item.facts.flags))


class HeaderMatch(Condition):
    """Some value of header ``name`` (case-insensitive) contains a match of the pattern."""

    def __init__(self, name: str, pattern: Pattern) -> None:
        self.name = name.lower()
        self.pattern = pattern

    def match(self, item: MatchInput) -> Matched:
        return _hit(
            any(
                h.name.lower() == self.name and self.pattern.test(h.value)
                for h in item.facts.headers
            )
        )


@dataclass(frozen=True, slots=True)
class AttachmentTest:
    """The sub-conditions of `attachment:`; each one given must hold for the same part."""

    filename: Pattern | None = None
    content_type: Pattern | None = None
    detected_type: Pattern | None = None
    size_over: int | None = None

    def accepts(self, part: MimePart) -> bool:
        if self.filename is not None and not any(map(self.filename.test, part.filenames)):
            return False
        if self.content_type is not None and not self.content_type.test(part.content_type):
            return False
        if self.detected_type is not None and not (
            part.detected_type and self.detected_type.test(part.detected_type)
        ):
            return False
        return self.size_over is None or part.decoded_size > self.size_over


class AttachmentMatch(Condition):
    selects_attachments = True

    def __init__(self, test: AttachmentTest) -> None:
        self.test = test

    def match(self, item: MatchInput) -> Matched:
        found = frozenset(part.index for part in item.attachments if self.test.accepts(part))
        return found or None


class AllOf(Condition):
    def __init__(self, children: Iterable[Condition]) -> None:
        self.children = tuple(children)
        self.selects_attachments = any(c.selects_attachments for c in self.children)

    def match(self, item: MatchInput) -> Matched:
        selected = NOTHING
        for child in self.children:
            found = child.match(item)
            if found is None:
                return None
            if found:
                selected = selected | found
        return selected


class AnyOf(Condition):
    """True when one child matches; every matching child contributes its attachments."""

    def __init__(self, children: Iterable[Condition]) -> None:
        self.children = tuple(children)
        self.selects_attachments = any(c.selects_attachments for c in self.children)

    def match(self, item: MatchInput) -> Matched:
        selected: Matched = None
        for child in self.children:
            found = child.match(item)
            if found is not None:
                selected = found if selected is None else selected | found
        return selected


class Not(Condition):
    """Negation; attachments matched inside a `not` are never selected."""

    def __init__(self, child: Condition) -> None:
        self.child = child

    def match(self, item: MatchInput) -> Matched:
        return NOTHING if self.child.match(item) is None else None


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
    return (item.facts.envelope.client_name,)


def get_helo(item: MatchInput) -> tuple[str | None]:
    return (item.facts.envelope.helo,)


def get_auth_user(item: MatchInput) -> tuple[str | None]:
    user = item.facts.envelope.auth_user
    return (user.lower() if user is not None else None,)


def get_subject(item: MatchInput) -> tuple[str]:
    return (item.subject,)


def get_text(item: MatchInput) -> tuple[str]:
    return (item.facts.text,)


def is_authenticated(item: MatchInput) -> bool:
    return item.facts.envelope.authenticated


def has_html(item: MatchInput) -> bool:
    return item.facts.has_html


def is_duplicate(item: MatchInput) -> bool:
    return item.facts.duplicate


def all_of(conditions: dict[str, Any]) -> Condition:
    """The conditions of one `when:` mapping, ANDed (a single one stands alone)."""
    children = [c for c in conditions.values() if isinstance(c, Condition)]
    return children[0] if len(children) == 1 else AllOf(children)
