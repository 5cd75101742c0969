"""The top level of a policy file: metadata, limits, sanitizing, rules and tests.

``POLICY`` is the one description of the format: :func:`read_policy` validates
and compiles a composed document with it, and ``schema`` turns it into JSON
Schema for editors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from . import conditions as c
from .conditionformat import CONDITION
from .errors import PAST_PARSER_CAP, likely_meant, shown
from .mappingspecs import Field, Obj, ObjectContext
from .model import (
    DEFAULT_URL_SCHEMES,
    Limits,
    Mode,
    Policy,
    SanitizeSettings,
    StructureAction,
)
from .policyformat import NAME, RULE
from .policyset import PARSER_MAX_DEPTH, PARSER_MAX_PARTS
from .spec import (
    INVALID,
    Convert,
    JsonSchema,
    Lazy,
    ListOf,
    Scalar,
    Size,
    Spec,
    SpecError,
    boolean,
    caseless_except,
    choice,
    integer,
    text,
)
from .testformat import EXPECTED_REF, PARSER_CAPS, TEST_CASE, limit_problem
from .yamlnodes import Reader, first_at, placed

FORMAT_VERSION = 1
FORBIDDEN_SCHEMES = frozenset({"javascript", "vbscript"})
_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*"


def _version(value: int) -> None:
    if value != FORMAT_VERSION:
        raise SpecError(
            f"unsupported version {value}; this postwarden reads version {FORMAT_VERSION}"
        )


def _scheme(value: str) -> str:
    """Checked item by item, so that each refused scheme is told at its own place."""
    lowered = value.lower()
    if lowered in FORBIDDEN_SCHEMES:
        raise SpecError(f"URL scheme {lowered} can never be allowed")
    return lowered


# What `limits: when:` may test: only what is known at MAIL FROM, so that the milter
# applies the limits from there on (SIZE, the body as it streams, 452 at RCPT).
_ENVELOPE_KEYS = (
    "sender", "sender_domain", "client_ip", "client_name", "helo", "authenticated", "auth_user",
)


def _envelope_list(make: type[c.AnyOf] | type[c.AllOf]) -> Convert:
    return Convert(ListOf(Lazy(lambda: LIMITS_CONDITION), single_ok=False), make)


LIMITS_CONDITION: Obj = Obj(
    "limits condition (what is known at MAIL FROM)",
    "The transactions these limits apply to, by what is known at MAIL FROM; all keys "
    "given must hold (AND). Nest with any / all / not.",
    {
        **{key: CONDITION.fields[key] for key in _ENVELOPE_KEYS},
        "any": Field(_envelope_list(c.AnyOf), CONDITION.fields["any"].doc),
        "all": Field(_envelope_list(c.AllOf), CONDITION.fields["all"].doc),
        "not": Field(Convert(Lazy(lambda: LIMITS_CONDITION), c.Not),
                     CONDITION.fields["not"].doc),
    },
    CONDITION.build,  # ANDs the keys, refuses an empty mapping as a rule's `when` does
    def_name="limits_condition",
)


def _limits(values: dict[str, Any], ctx: ObjectContext) -> tuple[Limits, c.Condition | None]:
    _check_when_alone(values, ctx)
    limits = {key: value for key, value in values.items() if key != "when"}
    return Limits(**limits), values.get("when")


def _check_when_alone(_: dict[str, Any], ctx: ObjectContext) -> None:
    """A `when` that would scope nothing (no other key written) is an issue; by the keys
    written, so that it is told beside an error in the condition too (a misspelt limit
    is told as the unknown key it is)."""
    if "when" in ctx.fields and isinstance(ctx.node, yaml.MappingNode) and len(ctx.node.value) == 1:
        ctx.error("when", "when without a limit to apply it to (add one, or remove when)")


class _ParserCapped(Spec):
    """An integer limit the parser caps: one past the cap acts as the cap, which a warning
    says (loaded silently, 5000 parts read as a limit that was 1000)."""

    def __init__(self, inner: Spec, cap: int, unit: str) -> None:
        self.inner = inner
        self.cap = cap
        self.unit = unit

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        value = self.inner.read(node, reader)
        if type(value) is int and value > self.cap:
            reader.warn(node, f"{value} acts as {self.cap}: the parser reads at most "
                              f"{self.cap} {self.unit}, and on_structure_limit applies "
                              "past them", code=PAST_PARSER_CAP)
        return value

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        return self.inner.schema(defs)


# 0 is no limit to Postfix (message_size_limit = 0) and to many tools: a policy's 0 would
# be the opposite, so a limit of 0 is refused, saying what it would do.
_ZERO = "0 would {}: leave the limit out for none"

LIMITS = Obj(
    "limits",
    "Limits; with several policies the strictest value set for each wins, among those "
    "whose limits apply to the transaction (no when, or their when holds).",
    {
        "when": Field(
            LIMITS_CONDITION,
            "Apply these limits only to transactions this holds for (envelope keys known at "
            "MAIL FROM only); omitted = every transaction.",
        ),
        "max_message_bytes": Field(
            Size(zero=_ZERO.format("refuse every message")),
            "Larger messages are rejected with 552 5.3.4.",
        ),
        "max_attachment_bytes": Field(
            Size(zero=_ZERO.format("strip every attachment")),
            "Larger attachments are replaced by a text notice (reason max_attachment_bytes).",
        ),
        "max_recipients": Field(
            integer(minimum=1, zero=_ZERO.format("refuse every recipient")),
            "Recipients beyond this get 452 4.5.3 (and are removed); "
            "mail submitted with sendmail(1) past it is refused whole (550 5.5.3)."
        ),
        "max_mime_parts": Field(
            _ParserCapped(integer(minimum=1, zero=_ZERO.format(
                "refuse every message (one part is 1)")), PARSER_MAX_PARTS, "parts"),
            "More MIME parts: on_structure_limit applies. The parser reads at most "
            f"{PARSER_MAX_PARTS}: a larger value is {PARSER_MAX_PARTS}.",
        ),
        "max_mime_depth": Field(
            _ParserCapped(integer(minimum=1, zero=_ZERO.format(
                "refuse every message with parts (max_mime_parts: 1 takes single-part "
                "messages only)")), PARSER_MAX_DEPTH, "levels"),
            "Deeper nesting: on_structure_limit applies. A message's own body is depth 0, "
            "the parts of a multipart (or the message a message/rfc822 part holds) depth 1, "
            "theirs 2: 1 takes text with attachments, not the common multipart/alternative "
            f"inside multipart/mixed. The parser reads at most {PARSER_MAX_DEPTH} levels: a "
            f"larger value is {PARSER_MAX_DEPTH}.",
        ),
        # No default: a policy that leaves it out must not outvote one that sets it.
        "on_structure_limit": Field(
            Convert(choice(*StructureAction), StructureAction),
            "reject (554 5.6.0) or quarantine a message past max_mime_parts/max_mime_depth."
            " Of the policies that set it, reject wins; reject when none does.",
        ),
    },
    _limits,
    def_name="limits",
    check=_check_when_alone,
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
                ListOf(Convert(text(pattern=_SCHEME, what="a URL scheme",
                                    schema_pattern=caseless_except(FORBIDDEN_SCHEMES, _SCHEME)),
                               _scheme)),
                frozenset,
            ),
            "URL schemes links and images may use (javascript/vbscript never).",
        ),
        "signed_mail": Field(
            choice("skip", "sanitize"),
            "skip: a signed part (multipart/signed, S/MIME, PGP/MIME) is never changed; one "
            "that would need a change (HTML to sanitize, an attachment to strip) holds the "
            "message, but HTML sanitizing would change only harmlessly (Outlook's <o:p>, "
            "<meta>, namespaces, plain style sheet) goes out as it came. sanitize: changed "
            "like any other part (the signature breaks).",
            default="skip",
        ),
    },
    lambda values, ctx: SanitizeSettings(
        **{"allowed_url_schemes": DEFAULT_URL_SCHEMES, **values}, where=ctx.where("html")),
    def_name="sanitize",
)


def _value(node: yaml.Node | None, key: str, reader: Reader) -> yaml.Node | None:
    """The node of ``key`` in a mapping node; None when there is none."""
    pairs: list[tuple[yaml.Node, yaml.Node]] = (
        node.value if isinstance(node, yaml.MappingNode) else []
    )
    for key_node, value_node in pairs:
        if isinstance(key_node, yaml.ScalarNode) and reader.scalar(key_node) == key:
            return value_node
    return None


def _text(node: yaml.Node | None, reader: Reader, pattern: str) -> str | None:
    """A scalar's string when it matches ``pattern`` (else it is an issue of its own)."""
    value = reader.scalar(node) if isinstance(node, yaml.ScalarNode) else None
    return value if isinstance(value, str) and re.fullmatch(pattern, value) else None


def _items(node: yaml.Node | None) -> list[yaml.Node]:
    return node.value if isinstance(node, yaml.SequenceNode) else []


_T = TypeVar("_T")


def _once_per_content(walk: Callable[[yaml.Node | None], _T]) -> Callable[[yaml.Node | None], _T]:
    """``walk``, which looks at a node's contents only, done once for each contents: an
    alias is a copy of its anchor's node sharing what it holds, so the checks below walk
    each list or mapping once, however many aliases name it, and cost no more than
    composing did (the read may have left them unvisited: a key that is no string)."""
    walked: dict[int, _T] = {}

    def once(node: yaml.Node | None) -> _T:
        # A scalar's value is a string, which CPython may share between equal ones
        # ("1" here and there): a scalar is its own node (an alias of one is walked
        # again, at no cost).
        key = id(node.value if isinstance(node, yaml.CollectionNode) else node)
        if key not in walked:
            walked[key] = walk(node)
        return walked[key]

    return once


def _rule_names(node: yaml.Node, reader: Reader) -> Iterator[tuple[str, yaml.Node]]:
    """Each rule's name that is a valid one, with the node to report it at."""
    name_of = _once_per_content(lambda rule: _value(rule, "name", reader))
    for rule in _items(_value(node, "rules", reader)):
        name_node = name_of(rule)
        name = _text(name_node, reader, NAME)
        if name_node is not None and name is not None:
            yield name, placed(name_node, rule)  # an aliased rule: at the alias


def _check_names(node: yaml.Node, reader: Reader) -> None:
    """Rule names unique, and every rule a test expects defined: checked on the nodes,
    so that a mistake elsewhere in a rule or test hides neither (issues come all at once)."""
    if reader.too_large:
        return
    seen: dict[str, yaml.Node] = {}
    for name, name_node in _rule_names(node, reader):
        first = seen.setdefault(name, name_node)
        if first is not name_node:
            reader.error(name_node, f"duplicate rule name {shown(name)} "
                                    f"(first at {first_at(first, name_node)})")
    _check_expected_rules(node, reader, seen)


def _check_expected_rules(node: yaml.Node, reader: Reader, rules: dict[str, yaml.Node]) -> None:
    """Every rule a test's expect_rules names is one of ``rules`` (an issue for `check`
    and `test`, elsewhere a warning), and (for `check` and `test`) every rule or limit
    named as the policy's verdicts name it: ``report:`` before it in a report-mode
    policy, not in an enforce-mode one."""
    report = _text(_value(node, "mode", reader), reader, "report") is not None

    def problems(expected: yaml.Node | None) -> dict[str, yaml.Node]:
        """Each problem, at the first name that has it (as editors and CI mark a line)."""
        one = [expected] if expected is not None else []
        nodes: list[yaml.Node] = [*_items(expected)] or one  # or one scalar
        listed = ((item, _text(item, reader, EXPECTED_REF)) for item in nodes)
        # Each of them, not the first only: all issues at once.
        found: dict[str, yaml.Node] = {}
        for item, ref in listed:
            if ref is not None and (problem := _ref_problem(ref, rules, report, reader)):
                found.setdefault(problem, item)
        return found

    expected_of = _once_per_content(lambda case: _value(case, "expect_rules", reader))
    problems_in = _once_per_content(problems)
    title_of = _once_per_content(lambda case: _text(_value(case, "name", reader), reader, "(?s).+"))
    # Where the policies filter mail a test's mistake is only told (load_policy_set):
    # a rule renamed and a case not updated must not stop a milter.
    tell = reader.error if reader.check_files else reader.warn
    for case in _items(_value(node, "tests", reader)):
        for problem, at in problems_in(expected_of(case)).items():
            title = title_of(case)
            prefix = f"test {title!r}: " if title is not None else ""
            tell(placed(at, case), f"{prefix}{problem}")


def _ref_problem(ref: str, rules: dict[str, yaml.Node], report: bool, reader: Reader) -> str:
    """Why no verdict of the policy alone names ``ref`` ("": one may): an unknown rule,
    a misspelt limit, a misplaced ``report:``; each a warning where the policies filter
    mail (see _check_expected_rules)."""
    name = ref.removeprefix("report:")
    kind = "limit" if name.startswith("limit:") else "rule"
    if kind == "rule" and name not in rules:
        prefix = ref.removesuffix(name)  # "report:", or ""
        meant = likely_meant(ref, [prefix + rule for rule in rules])
        return f"unknown rule {ref!r} in expect_rules{meant}"
    # A limit with a problem of its own is told that one, once: by testformat where the
    # tests are read to run (`check`, `test`), here elsewhere.
    if (problem := limit_problem(ref)) is not None:
        return "" if reader.check_files else problem
    if ref.startswith("report:") == report:
        return ""
    if report and name.removeprefix("limit:") in PARSER_CAPS:
        return ""
    mode, recorded = ("report", f"report:{name}") if report else ("enforce", name)
    return (f"{ref!r} in expect_rules: verdicts of this {mode}-mode policy name the {kind} "
            f"{recorded!r}")


@dataclass(frozen=True, slots=True)
class DeclaredNames:
    """The names a source declares, each with its (line, column): what must be unique
    across a set."""

    policy: tuple[str, tuple[int, int]] | None
    rules: tuple[tuple[str, tuple[int, int]], ...]
    # A report-mode policy's rules are recorded as "report:<name>": they may share the
    # names of enforced ones (a report-mode copy of a policy, to try a change out).
    report: bool = False


def _where(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def declared_names(node: yaml.Node, reader: Reader) -> DeclaredNames:
    """The policy's and its rules' names, read from the nodes as :func:`_check_names`
    reads them: a source with other problems still takes part in the checks across the
    set, so a name it repeats is reported with those problems, not once they are fixed."""
    if reader.too_large:
        return DeclaredNames(None, ())
    name_node = _value(node, "name", reader)
    name = _text(name_node, reader, NAME)
    policy = (name, _where(name_node)) if name_node is not None and name is not None else None
    rules = tuple((rule, _where(at)) for rule, at in _rule_names(node, reader))
    report = _text(_value(node, "mode", reader), reader, "report") is not None
    return DeclaredNames(policy, rules, report)


def _policy(values: dict[str, Any], ctx: ObjectContext) -> Policy:
    # Rule names and expect_rules are checked by read_policy, valid rules or not.
    limits, limits_when = values.get("limits", (Limits(), None))
    return Policy(
        name=values["name"],
        source=ctx.reader.label,
        mode=Mode(values["mode"]),
        priority=values["priority"],
        description=values.get("description", ""),
        limits=limits,
        limits_when=limits_when,
        sanitize=values.get("sanitize", SanitizeSettings()),
        tag_flags=values["tag_flags"],
        rules=values.get("rules", ()),
        tests=values.get("tests", ()),
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
    extension_prefix="x-",  # x-common: &defaults ..., aliased below
    elsewhere={**dict.fromkeys(LIMITS.fields.keys() - {"when"}, "under limits:"),
               **dict.fromkeys(SANITIZE.fields, "under sanitize:"),
               **dict.fromkeys(("when", "then"), "in a rule, under rules:")},
)


def read_policy(node: yaml.Node | None, reader: Reader) -> Policy | None:
    """The compiled policy of a composed document, or None with issues in ``reader``."""
    if node is None:
        reader.error(None, "empty document: expected a policy mapping")
        return None
    policy = POLICY.read(node, reader)
    known = len(reader.issues)
    _check_names(node, reader)
    return None if policy is INVALID or len(reader.issues) > known else policy
