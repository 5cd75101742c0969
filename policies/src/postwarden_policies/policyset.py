"""A policy set: several policies combined into one immutable, ordered whole.

How policies combine:
- Rules run policy by policy, ordered by ``priority`` (lower first) then name.
- ``mode: report`` policies are evaluated on their own, even for a message an
  enforced limit refuses: the limits each one sets are checked and those the
  message is past recorded as "report:limit:<name>", its matched rules as
  "report:<rule>"; none of their actions, limits or sanitize settings apply
  (``limits`` below, which the milter also checks at MAIL and RCPT time, are
  the enforced ones only).
- Limits of enforce-mode policies combine as the strictest of the values they
  set: the smallest value of each limit, and ``on_structure_limit: reject`` wins
  over ``quarantine``; a policy that leaves a limit out changes nothing, and
  ``on_structure_limit`` is reject when no policy sets it.
- HTML sanitizing is on when any enforce-mode policy turns it on; among those
  policies ``remote_images: strip`` wins, allowed URL schemes are the ones all
  of them allow, and signed mail is sanitized only when all of them say so.
- The X-Postwarden-Flags tag is added unless every enforce-mode policy says
  ``tag_flags: false``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .html_allowlist import HtmlOptions
from .model import Limits, Policy, Rule, StructureAction

# The parser's own caps: a message past them is flagged and treated as past the limit.
PARSER_MAX_PARTS = 1000
PARSER_MAX_DEPTH = 100


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


def _combined_limits(policies: tuple[Policy, ...]) -> Limits:
    limits = functools.reduce(Limits.combine, (p.limits for p in policies), Limits())
    return replace(limits, on_structure_limit=limits.on_structure_limit or StructureAction.REJECT)


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Build with :meth:`of`; every combined value is computed once, here."""

    policies: tuple[Policy, ...]
    content_hash: str
    enforced_rules: tuple[Rule, ...]
    report_policies: tuple[Policy, ...]
    limits: Limits
    html_options: HtmlOptions | None  # None: no enforce-mode policy sanitizes HTML
    skip_signed: bool
    tag_flags: bool

    @classmethod
    def of(cls, policies: Iterable[Policy], digest: str) -> PolicySet:
        ordered = tuple(sorted(policies, key=lambda p: (p.priority, p.name)))
        enforced = tuple(p for p in ordered if not p.report_only)
        return cls(
            policies=ordered,
            content_hash=digest,
            enforced_rules=tuple(rule for policy in enforced for rule in policy.rules),
            report_policies=tuple(p for p in ordered if p.report_only),
            limits=_combined_limits(enforced),
            html_options=_html_options(enforced),
            skip_signed=_skip_signed(enforced),
            tag_flags=any(p.tag_flags for p in enforced),
        )

    @property
    def max_recipients(self) -> int | None:
        """Recipients allowed per message; the milter answers 452 4.5.3 past it at RCPT time."""
        return self.limits.max_recipients

    @property
    def max_mime_parts(self) -> int:
        """``max_parts`` to give the parser."""
        return min(self.limits.max_mime_parts or PARSER_MAX_PARTS, PARSER_MAX_PARTS)

    @property
    def max_mime_depth(self) -> int:
        """``max_depth`` to give the parser."""
        return min(self.limits.max_mime_depth or PARSER_MAX_DEPTH, PARSER_MAX_DEPTH)
