"""The top level of a policy file: metadata, limits, sanitizing, rules and tests.

``POLICY`` is the one description of the format: :func:`read_policy` validates
and compiles a composed document with it, and ``schema`` turns it into JSON
Schema for editors.
"""

from __future__ import annotations

from typing import Any

import yaml

from .model import (
    DEFAULT_URL_SCHEMES,
    Limits,
    Mode,
    Policy,
    PolicyTest,
    Rule,
    SanitizeSettings,
    StructureAction,
)
from .policyformat import NAME, RULE
from .spec import (
    INVALID,
    Convert,
    Field,
    ListOf,
    Obj,
    ObjectContext,
    Scalar,
    Size,
    SpecError,
    boolean,
    choice,
    integer,
    text,
)
from .testformat import TEST_CASE
from .yamlnodes import Reader

FORMAT_VERSION = 1
FORBIDDEN_SCHEMES = frozenset({"javascript", "vbscript"})


def _version(value: int) -> None:
    if value != FORMAT_VERSION:
        raise SpecError(
            f"unsupported version {value}; this postwarden reads version {FORMAT_VERSION}"
        )


def _schemes(values: tuple[str, ...]) -> frozenset[str]:
    lowered = frozenset(v.lower() for v in values)
    forbidden = sorted(lowered & FORBIDDEN_SCHEMES)
    if forbidden:
        raise SpecError(f"URL scheme {forbidden[0]} can never be allowed")
    return lowered


LIMITS = Obj(
    "limits",
    "Limits; with several policies the strictest value set for each wins.",
    {
        "max_message_bytes": Field(Size(), "Larger messages are rejected with 552 5.3.4."),
        "max_attachment_bytes": Field(
            Size(),
            "Larger attachments are replaced by a text notice (reason max_attachment_bytes).",
        ),
        "max_recipients": Field(
            integer(minimum=1), "Recipients beyond this get 452 4.5.3 (and are removed)."
        ),
        "max_mime_parts": Field(integer(minimum=1), "More MIME parts: on_structure_limit applies."),
        "max_mime_depth": Field(integer(minimum=1), "Deeper nesting: on_structure_limit applies."),
        # No default: a policy that leaves it out must not outvote one that sets it.
        "on_structure_limit": Field(
            Convert(choice(*StructureAction), StructureAction),
            "reject (554 5.6.0) or quarantine a message past max_mime_parts/max_mime_depth."
            " Of the policies that set it, reject wins; reject when none does.",
        ),
    },
    lambda values, _: Limits(**values),
    def_name="limits",
)

SANITIZE = Obj(
    "sanitize",
    "HTML sanitizing of every text/html part of delivered messages.",
    {
        "html": Field(boolean(), "Run text/html parts through the sanitizer.", default=False),
        "remote_images": Field(
            choice("keep", "strip"),
            "strip removes remote images (tracking pixels).",
            default="keep",
        ),
        "allowed_url_schemes": Field(
            Convert(
                ListOf(text(pattern=r"[A-Za-z][A-Za-z0-9+.-]*", what="a URL scheme")), _schemes
            ),
            "URL schemes links and images may use (javascript/vbscript never).",
        ),
        "signed_mail": Field(
            choice("skip", "sanitize"),
            "skip: multipart/signed, S/MIME and PGP messages are never touched.",
            default="skip",
        ),
    },
    lambda values, _: SanitizeSettings(**{"allowed_url_schemes": DEFAULT_URL_SCHEMES, **values}),
    def_name="sanitize",
)


def _known_rule(name: str, rules: set[str]) -> bool:
    bare = name.removeprefix("report:")
    return bare in rules or name.startswith("limit:")


def _policy(values: dict[str, Any], ctx: ObjectContext) -> Any:
    reader = ctx.reader
    rules: tuple[Rule, ...] = values.get("rules", ())
    tests: tuple[PolicyTest, ...] = values.get("tests", ())
    seen: dict[str, Rule] = {}
    ok = True
    for rule in rules:
        if rule.name in seen:
            first = seen[rule.name].where[0]
            reader.issues.append(
                reader.issue_at(
                    rule.where, f"duplicate rule name {rule.name!r} (first at line {first})"
                )
            )
            ok = False
        seen.setdefault(rule.name, rule)
    for case in tests:
        unknown = [n for n in case.expect_rules or () if not _known_rule(n, set(seen))]
        if unknown:
            reader.issues.append(
                reader.issue_at(
                    case.where, f"test {case.name!r}: unknown rule {unknown[0]!r} in expect_rules"
                )
            )
            ok = False
    if not ok:
        return INVALID
    return Policy(
        name=values["name"],
        source=reader.label,
        mode=Mode(values["mode"]),
        priority=values["priority"],
        description=values.get("description", ""),
        limits=values.get("limits", Limits()),
        sanitize=values.get("sanitize", SanitizeSettings()),
        tag_flags=values["tag_flags"],
        rules=rules,
        tests=tests,
        where=ctx.where("name"),
    )


POLICY = Obj(
    "policy",
    "A postwarden policy file.",
    {
        "version": Field(
            Scalar(
                int,
                "integer",
                "the format version 1",
                check=_version,
                extra={"const": FORMAT_VERSION},
            ),
            "Format version; always 1.",
            required=True,
        ),
        "name": Field(
            text(pattern=NAME, what="a policy name (letters, digits, . _ -)", max_length=100),
            "Unique policy name.",
            required=True,
        ),
        "description": Field(text(), "What the policy is for."),
        "mode": Field(
            choice(*Mode), "report: evaluate and log, change nothing.", default=Mode.ENFORCE.value
        ),
        "priority": Field(
            integer(), "Lower runs first when several policies are loaded.", default=100
        ),
        "limits": Field(LIMITS, "Size and structure limits."),
        "sanitize": Field(SANITIZE, "HTML sanitizing."),
        "tag_flags": Field(
            boolean(),
            "Add X-Postwarden-Flags (e.g. malformed) to delivered messages the parser flagged; "
            "copies a sender wrote are removed.",
            default=True,
        ),
        "rules": Field(ListOf(RULE, min_items=0, single_ok=False), "Rules, evaluated in order."),
        "tests": Field(
            ListOf(TEST_CASE, min_items=0, single_ok=False),
            "Sample messages and expected outcomes (`postwarden-policy test`).",
        ),
    },
    _policy,
)


def read_policy(node: yaml.Node | None, reader: Reader) -> Policy | None:
    """The compiled policy of a composed document, or None with issues in ``reader``."""
    if node is None:
        reader.error(None, "empty document: expected a policy mapping")
        return None
    policy = POLICY.read(node, reader)
    return None if policy is INVALID else policy
