"""A policy set: several policies combined into one immutable, ordered whole.

How policies combine:
- Rules run policy by policy, ordered by ``priority`` (lower first) then name.
- ``mode: report`` policies are evaluated on their own, even for a message an
  enforced limit refuses: the limits each one sets are checked and those the
  message is past recorded as "report:limit:<name>", its matched rules as
  "report:<rule>"; none of their actions, limits or sanitize settings apply
  (:meth:`PolicySet.limits_for`, which the milter also checks at MAIL and RCPT
  time, gives the enforced ones only). A report-mode policy's limits with
  ``when`` are checked only where it holds.
- Limits of enforce-mode policies combine as the strictest of the values they
  set: the smallest value of each limit, and ``on_structure_limit: reject`` wins
  over ``quarantine``; a policy that leaves a limit out changes nothing, and
  ``on_structure_limit`` is reject when no policy sets it. A policy's limits with
  ``when`` take part only for the transactions it holds for (:meth:`PolicySet.limits_for`);
  it reads only the envelope as it is at MAIL FROM, so the milter applies them from there.
- HTML sanitizing is on when any enforce-mode policy turns it on; among those
  policies ``remote_images: strip`` wins, allowed URL schemes are the ones all
  of them allow, and signed mail is sanitized only when all of them say so.
- The X-Postwarden-Flags tag is added unless every enforce-mode policy says
  ``tag_flags: false``. A sender's own copies are removed then too, and also while
  no policy is enforced (a report-mode trial adds no tag, yet a forged one passing
  would be read downstream as ours: the message carries our id header).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .conditions import MatchInput
from .facts import Envelope, MessageFacts
from .html_allowlist import HtmlOptions
from .model import Limits, Policy, Rule, StructureAction

# The parser's own caps: a message past them is flagged and treated as past the limit.
PARSER_MAX_PARTS = 1000
PARSER_MAX_DEPTH = 100
_SCOPED_KEPT = 1024  # limits_for answers remembered (a few KiB each at most): then afresh


def source_digest(text: str) -> str:
    """sha256 of a source with normalised line endings and no byte order mark: what an
    editor on Windows adds changes nothing that loads, so it makes no new revision."""
    normalised = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return hashlib.sha256(normalised.encode("utf-8", "surrogatepass")).hexdigest()


def content_hash(texts: Iterable[str]) -> str:
    """sha256 over the sorted digests of every source, independent of labels and order."""
    digests = sorted(source_digest(text) for text in texts)
    return hashlib.sha256("\n".join(digests).encode("ascii")).hexdigest()


def _skip_signed(enforced: tuple[Policy, ...]) -> bool:
    """Whether signed parts stay intact: ``signed_mail`` of the policies that sanitize
    HTML, or of every policy when none does (a strip rule changes signed parts too);
    any one saying ``skip`` wins. With no policy to say it, the default ``skip``."""
    deciding = [p for p in enforced if p.sanitize.html] or list(enforced)
    return not deciding or any(p.sanitize.signed_mail != "sanitize" for p in deciding)


def _html_options(policies: tuple[Policy, ...]) -> HtmlOptions | None:
    sanitizing = [p.sanitize for p in policies if p.sanitize.html]
    if not sanitizing:
        return None
    strip = any(s.remote_images == "strip" for s in sanitizing)
    schemes = functools.reduce(frozenset.intersection, (s.allowed_url_schemes for s in sanitizing))
    return HtmlOptions(remote_images="strip" if strip else "keep", allowed_url_schemes=schemes)


def _combined_limits(limits: Iterable[Limits]) -> Limits:
    combined = functools.reduce(Limits.combine, limits, Limits())
    return replace(
        combined, on_structure_limit=combined.on_structure_limit or StructureAction.REJECT
    )


def _envelope_input(envelope: Envelope) -> MatchInput:
    """What a `limits: when:` reads: the envelope alone (it may name nothing else), so
    that it holds at end of message as it did at MAIL FROM."""
    facts = MessageFacts(envelope=envelope, raw=b"", body_offset=0, headers=(), parts=(),
                         from_address=None, subject=None, message_id=None, size=0)
    return MatchInput.of(facts)


def _scope_key(envelope: Envelope) -> tuple[str | None, ...]:
    """What a `limits: when:` may read of an envelope (the keys policydoc allows it, and
    those derived from these): the same key, the same limits."""
    return (envelope.sender, envelope.client_ip, envelope.client_name, envelope.helo,
            envelope.auth_user, envelope.origin)


def limits_apply(policy: Policy, item: MatchInput) -> bool:
    """Whether ``policy``'s limits apply to the transaction ``item`` describes."""
    return policy.limits_when is None or policy.limits_when.match(item) is not None


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Build with :meth:`of`; every combined value is computed once, here."""

    policies: tuple[Policy, ...]
    content_hash: str
    enforced_rules: tuple[Rule, ...]
    report_policies: tuple[Policy, ...]
    # The limits of the enforce-mode policies without `when`: what every transaction
    # gets (limits_for gives one's own, never looser).
    limits: Limits
    # Every enforce-mode policy, when one of them has limits with `when`: limits_for
    # combines those that apply. Empty otherwise: every transaction gets ``limits``.
    scoped_limits: tuple[Policy, ...]
    html_options: HtmlOptions | None  # None: no enforce-mode policy sanitizes HTML
    skip_signed: bool
    tag_flags: bool
    drop_forged_flags: bool  # remove a sender's X-Postwarden-Flags
    # limits_for's answers (with scoped_limits): the milter asks at MAIL, at each RCPT and
    # at end of message, the parser and the engine once more; each answer took tens of
    # microseconds (the envelope's facts, every condition). Not copied by replace().
    _scoped: dict[tuple[str | None, ...], Limits] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, policies: Iterable[Policy], digest: str) -> PolicySet:
        ordered = tuple(sorted(policies, key=lambda p: (p.priority, p.name)))
        enforced = tuple(p for p in ordered if not p.report_only)
        scoped = any(p.limits_when is not None for p in enforced)
        return cls(
            policies=ordered,
            content_hash=digest,
            enforced_rules=tuple(rule for policy in enforced for rule in policy.rules),
            report_policies=tuple(p for p in ordered if p.report_only),
            limits=_combined_limits(p.limits for p in enforced if p.limits_when is None),
            scoped_limits=enforced if scoped else (),
            html_options=_html_options(enforced),
            skip_signed=_skip_signed(enforced),
            tag_flags=any(p.tag_flags for p in enforced),
            drop_forged_flags=not enforced or any(p.tag_flags for p in enforced),
        )

    def limits_for(self, envelope: Envelope) -> Limits:
        """The enforced limits of a transaction: the strictest combination of those of
        the enforce-mode policies whose limits apply to it. No `when` in the set:
        ``limits``, at no cost."""
        if not self.scoped_limits:
            return self.limits
        key = _scope_key(envelope)
        limits = self._scoped.get(key)
        if limits is None:
            item = _envelope_input(envelope)
            limits = _combined_limits(
                p.limits for p in self.scoped_limits if limits_apply(p, item))
            if len(self._scoped) >= _SCOPED_KEPT:
                self._scoped.clear()
            self._scoped[key] = limits
        return limits

    def parser_caps(self, envelope: Envelope) -> tuple[int, int]:
        """``max_parts`` and ``max_depth`` to give the parser for a transaction: its own
        structure limits (:meth:`limits_for`), within the parser's."""
        limits = self.limits_for(envelope)
        return (min(limits.max_mime_parts or PARSER_MAX_PARTS, PARSER_MAX_PARTS),
                min(limits.max_mime_depth or PARSER_MAX_DEPTH, PARSER_MAX_DEPTH))

