"""The loaded, compiled policy: immutable values built by ``policyformat``."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .conditions import ALWAYS, Condition
from .verdicts import Action, SmtpReply

# tel: and webcal: (click-to-call, add-to-calendar) run no script and fetch nothing
# until the reader clicks; common webmail keeps them.
DEFAULT_URL_SCHEMES = frozenset({"http", "https", "mailto", "cid", "tel", "webcal"})
_T = TypeVar("_T")


class Mode(enum.StrEnum):
    ENFORCE = "enforce"
    REPORT = "report"


class StructureAction(enum.StrEnum):
    REJECT = "reject"
    QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True)
class Actions:
    """What `then:` asks for: at most one terminal action plus accumulating edits."""

    terminal: Action | None = None
    strip_attachment: bool = False
    add_headers: tuple[tuple[str, str], ...] = ()
    remove_headers: tuple[str, ...] = ()
    subject_prefix: str | None = None
    notify: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    when: Condition = ALWAYS
    then: Actions = Actions()
    reply: SmtpReply | None = None  # reject and tempfail
    reason: str | None = None  # quarantine
    sanitize: bool = True
    description: str = ""
    where: tuple[int, int] = field(default=(0, 0), compare=False)  # of its name, for warnings


def _stricter_action(a: StructureAction, b: StructureAction) -> StructureAction:
    return StructureAction.REJECT if StructureAction.REJECT in (a, b) else a


def _written(a: _T | None, b: _T | None, stricter: Callable[[_T, _T], _T]) -> _T | None:
    """The stricter of two values, counting only the ones a policy wrote (not None)."""
    return b if a is None else a if b is None else stricter(a, b)


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of one policy; :meth:`combine` keeps the strictest of two.

    None is "not written": no limit, and for ``on_structure_limit`` reject unless
    another policy says quarantine (so a policy that is silent overrides nothing).
    """

    max_message_bytes: int | None = None
    max_attachment_bytes: int | None = None
    max_recipients: int | None = None
    max_mime_parts: int | None = None
    max_mime_depth: int | None = None
    on_structure_limit: StructureAction | None = None

    def combine(self, other: Limits) -> Limits:
        return Limits(
            max_message_bytes=_written(self.max_message_bytes, other.max_message_bytes, min),
            max_attachment_bytes=_written(
                self.max_attachment_bytes, other.max_attachment_bytes, min
            ),
            max_recipients=_written(self.max_recipients, other.max_recipients, min),
            max_mime_parts=_written(self.max_mime_parts, other.max_mime_parts, min),
            max_mime_depth=_written(self.max_mime_depth, other.max_mime_depth, min),
            on_structure_limit=_written(
                self.on_structure_limit, other.on_structure_limit, _stricter_action
            ),
        )


@dataclass(frozen=True, slots=True)
class SanitizeSettings:
    html: bool = False
    remote_images: str = "keep"
    allowed_url_schemes: frozenset[str] = DEFAULT_URL_SCHEMES
    signed_mail: str = "skip"
    where: tuple[int, int] = field(default=(0, 0), compare=False)  # of html, for warnings


@dataclass(frozen=True, slots=True)
class PolicyTest:
    """One `tests:` case: a message, its envelope and the expected outcome."""

    name: str
    expect: Action
    message: Path | None = None  # resolved against the policy file's folder
    raw: str | None = None  # the message inline
    sender: str = ""
    recipients: tuple[str, ...] = ()
    client_ip: str | None = None
    client_name: str | None = None
    helo: str | None = None
    auth_user: str | None = None
    duplicate: bool = False
    expect_rules: tuple[str, ...] | None = None
    expect_reply: str | None = None
    expect_headers: tuple[tuple[str, str], ...] = ()
    expect_headers_absent: tuple[str, ...] = ()
    expect_flags: tuple[str, ...] = ()  # among the verdict's flags, not all of them
    expect_notify: tuple[str, ...] | None = None
    expect_stripped: tuple[str, ...] | None = None
    where: tuple[int, int] = (0, 0)


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    source: str  # the label errors name: a path, or "name@r12" for a stored revision
    mode: Mode = Mode.ENFORCE
    priority: int = 100
    description: str = ""
    limits: Limits = Limits()
    # `limits: when:`: the transactions the limits apply to (None: every one). Only
    # what is known at MAIL FROM, so that the milter can apply them from there on.
    limits_when: Condition | None = None
    sanitize: SanitizeSettings = SanitizeSettings()
    tag_flags: bool = True
    rules: tuple[Rule, ...] = ()
    tests: tuple[PolicyTest, ...] = field(default=(), repr=False)
    where: tuple[int, int] = (0, 0)  # line, column of the name in the source

    @property
    def report_only(self) -> bool:
        return self.mode is Mode.REPORT
