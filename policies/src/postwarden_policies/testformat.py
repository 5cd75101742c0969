"""The `tests:` section of a policy file: sample messages and the outcome they must get.

A case names its message with ``message:`` (a path relative to the policy
file; it must exist only when the loader is asked to check sample files, as
``postwarden-policy check`` and ``test`` do) or gives it inline with ``raw:``.
``expect_rules`` lists exactly the rules that must match, in order
(report-mode rules as "report:<name>", limits as "limit:<name>", a report-mode
policy's as "report:limit:<name>", with the name of a real limit);
``expect_reply`` must be the start of the SMTP reply; ``expect_headers`` are
header values the delivered message carries (as delivered: unfolded, without the blank
after the colon, not trimmed), ``expect_headers_absent`` names of
headers it does not; ``expect_flags`` flags the verdict carries among others (the
parser sets companions such as ``malformed`` and notes harmless oddities, which a
case should not have to list, nor break on when a parser release notes one more);
``expect_notify`` exactly the webhook endpoints notified; ``expect_stripped`` the
file names of the attachments stripped.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from .conditionformat import ADDRESS, HEADER_NAME, address_hint, header_name_hint, list_hint
from .engine import FIELDS_LIMIT, INTERNAL_ERROR, REWRITE_FAILED, STRUCTURE_FLAGS
from .errors import TEST_EXPECTATION_UNMET, TEST_SAMPLE_MISREAD
from .facts import client_ip_text
from .mappingspecs import Field, MapOf, Obj, ObjectContext
from .mimeflags import FLAGS
from .model import Limits, PolicyTest
from .policyformat import ENDPOINT, NAME, PRINTABLE, TERMINALS
from .render import escaped
from .spec import (
    INVALID,
    Convert,
    JsonSchema,
    ListOf,
    Spec,
    SpecError,
    boolean,
    choice,
    text,
    written,
)
from .verdicts import NOT_DELIVERED, Action
from .yamlnodes import TOO_LARGE, Reader

_ADDRESS = text(pattern=ADDRESS, what="an e-mail address", hint=list_hint(ADDRESS, address_hint))
# What verdicts name a policy's limit by (on_structure_limit is what happens past two of
# them); and the parser's own cap on header fields, which no policy sets (nor reports).
_POLICY_LIMITS = tuple(f.name for f in fields(Limits) if f.name != "on_structure_limit")
_LIMIT_NAMES = (*_POLICY_LIMITS, FIELDS_LIMIT)
# expect_rules items: one naming a rule (which must be the policy's), or a limit.
RULE_REF = f"(?:report:)?{NAME}"
# The limits the parser's caps stand for: they bind whatever policies are loaded, so a
# report-mode policy's verdict alone names them without report: too.
PARSER_CAPS = frozenset({*STRUCTURE_FLAGS.values(), FIELDS_LIMIT})
EXPECTED_REF = f"{RULE_REF}|(?:report:)?limit:{NAME}"
# A limit by its real name for an editor at once; the loader leaves a misspelt one to
# `check` and `test` (limit_problem): a typo in a test's expectation must not stop a
# milter from loading the policies that filter mail.
_EXPECTED_RULE = text(
    pattern=EXPECTED_REF,
    what="a rule name or limit:<limit> (report:<either> for a report-mode policy)",
    schema_pattern=(f"{RULE_REF}|(?:report:)?limit:(?:{'|'.join(_POLICY_LIMITS)})"
                    f"|limit:{FIELDS_LIMIT}"),
)


class _ReplyStart(Spec):
    """The start of an SMTP reply, as text; or a reply code alone written as a number
    (``expect_reply: 550``), which says the same as "550": YAML reads it as an integer,
    and the code is what most cases expect."""

    _CODE = re.compile("[2-5][0-9][0-9]")  # as written: not 0550, 5.5e2 nor 0x226
    _TEXT = text(pattern=PRINTABLE, what="the start of an SMTP reply")

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return self._TEXT.read(node, reader)
        value = reader.scalar(node)
        if type(value) not in (int, float) and value is not TOO_LARGE:
            return self._TEXT.take(node, value, reader)
        if self._CODE.fullmatch(node.value):
            return node.value
        reader.error(node, "expected a reply code from 200 to 599, or the start of a reply "
                           f'as text ("550 5.7.1"), got {written(node)}')
        return INVALID

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        return {"anyOf": [{"type": "integer", "minimum": 200, "maximum": 599},
                          self._TEXT.schema(defs)]}


# One line of any text but control characters: compared with the decoded header
# value, which may hold any character.
_HEADER_TEXT = r"[^\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]+"
_HEADER = text(pattern=HEADER_NAME, what="a header name", hint=header_name_hint)
# What a verdict's flags may hold: the parser's, and the two the engine adds itself
# (a rewrite that failed, an internal error).
VERDICT_FLAGS = FLAGS | {REWRITE_FAILED, INTERNAL_ERROR}


# A rule's then: strip_attachment is an edit, which no verdict is: what its case expects.
_NO_VERDICT = {"strip_attachment": "stripping is an edit, not the verdict's action: write "
                                   "expect: accept, and expect_stripped: [the file names]"}
SAMPLE_KEYS = ("message", "raw")  # a case gives exactly one


def _test_case(values: dict[str, Any], ctx: ObjectContext) -> Any:
    if not _case_holds_together(values, ctx):
        return INVALID
    message = _message_path(values["message"], ctx) if "message" in values else None
    return PolicyTest(
        name=values["name"],
        expect=Action(values["expect"]),
        message=message,
        raw=values.get("raw"),
        sender="" if values.get("sender", "<>") == "<>" else values["sender"],
        recipients=values["recipients"],
        client_ip=values.get("client_ip"),
        client_name=values.get("client_name"),
        helo=values.get("helo"),
        auth_user=values.get("auth_user"),
        duplicate=values.get("duplicate", False),
        expect_rules=values.get("expect_rules"),
        expect_reply=values.get("expect_reply"),
        expect_headers=tuple(values.get("expect_headers", {}).items()),
        expect_headers_absent=values.get("expect_headers_absent", ()),
        expect_flags=values.get("expect_flags", ()),
        expect_notify=values.get("expect_notify"),
        expect_stripped=values.get("expect_stripped"),
        where=ctx.where(),
    )


def _case_holds_together(values: dict[str, Any], ctx: ObjectContext) -> bool:
    """Whether the case gives one sample, (for `check` and `test`) as a file that exists,
    and expectations a verdict can meet; told of the fields that read when another did
    not too (the TEST_CASE check), so that all issues come at once."""
    # By the keys written: a sample whose value did not read is still given.
    if sum(key in ctx.fields for key in SAMPLE_KEYS) != 1:
        ctx.error(None, "give exactly one of message (a file) or raw (the message inline)")
        return False
    lined = (_raw_has_lines(values, ctx) and _raw_not_folded(ctx)
             and _raw_starts_as_mail(values, ctx))
    met = _expectations_hold_together(values, ctx)
    if not ctx.reader.check_files:
        return True  # a test's mistake never stops a milter (nor an upload): told only
    # Only `check` and `test` require the file: a milter's policy_dir often holds
    # just the policies, and samples have nothing to do with filtering mail.
    found = "message" not in values or _sample_found(
        _message_path(values["message"], ctx), values["message"], ctx)
    return met and found and lined


def _raw_has_lines(values: dict[str, Any], ctx: ObjectContext) -> bool:
    """Whether an inline sample that writes \\n has line breaks; else an issue: in single
    quotes, or unquoted, YAML reads no escapes, so ``'Subject: hi\\n\\nbody'`` was one
    header field holding backslashes, no body, and the case tested another message."""
    raw = values.get("raw")
    if raw is None or "\\n" not in raw or "\n" in raw or "\r" in raw:
        return True
    _misread(ctx, "raw is one line: its \\n are a backslash and an n each, as YAML reads "
                  "escapes only in double quotes; write the message in double quotes "
                  '("Subject: hi\\n\\nbody") or as a block (raw: |, its lines below)')
    return False


def _raw_not_folded(ctx: ObjectContext) -> bool:
    """Whether an inline sample keeps its lines: one written folded (raw: >) has them
    joined by blanks, its header fields run into one, so the case tested another
    message (and passed, expecting what a malformed one gets)."""
    node = ctx.fields.get("raw")
    if not (isinstance(node, yaml.ScalarNode) and node.style == ">"):
        return True
    _misread(ctx, "raw is folded (>): YAML joins its lines with blanks, so its header "
                  "fields run into one line; write raw: | to keep each line")
    return False


# A byte order mark as the character, or as its UTF-8 bytes escaped (\udcef\udcbb\udcbf).
_RAW_BOM = ("\ufeff", codecs.BOM_UTF8.decode("ascii", "surrogateescape"))


def _raw_starts_as_mail(values: dict[str, Any], ctx: ObjectContext) -> bool:
    """Whether an inline sample starts as mail can, as a message file must: one pasted
    with the byte order mark of the file it came from reads as no header at all."""
    raw = values.get("raw")
    if raw is None or not raw.startswith(_RAW_BOM):
        return True
    _misread(ctx, "raw starts with a byte order mark (U+FEFF), which no mail starts with: "
                  "its header would read as none; remove it")
    return False


def _misread(ctx: ObjectContext, why: str) -> None:
    """An inline sample the parser would misread, the case testing another message:
    refused by `check` and `test`; where the policies filter mail (a milter, an upload),
    which run no test, a warning."""
    if ctx.reader.check_files:
        ctx.error("raw", why)
    else:
        ctx.warn("raw", why, TEST_SAMPLE_MISREAD)


def _message_path(given: str, ctx: ObjectContext) -> Path:
    # From stored text (an API upload of a file from git) the path stays relative:
    # the sample files stay in the repository, where `postwarden-policy test` runs.
    base = ctx.reader.base_dir
    return Path(given) if base is None else base / given


def _sample_found(path: Path, given: str, ctx: ObjectContext) -> bool:
    """Whether the sample is a file; else an issue at the case (is_file raises for a name
    too long or a directory it may not search, which would end the whole load)."""
    given = escaped(given)  # a line break in it would split the issue's line, or forge one
    try:
        if path.is_file():
            return _sample_starts_as_mail(path, given, ctx)
        if path.is_dir():  # found, but not what was meant
            ctx.error("message", f"message file {given} is a directory")
        elif path.exists() or path.is_symlink():  # there, but no file to read a sample from
            ctx.error("message", f"message file {given} is not a regular file (a FIFO, a "
                                 "device, a broken symbolic link?)")
        else:
            ctx.error("message", f"message file not found: {given}")
    except OSError as exc:
        ctx.error("message", f"cannot read message file {given}: {exc.strerror}")
    return False


def _sample_starts_as_mail(path: Path, given: str, ctx: ObjectContext) -> bool:
    """Whether a sample file starts as mail can (an issue if not): one an editor saved
    with a byte order mark (Notepad's UTF-8) starts with bytes no mail starts with,
    which the parser reads as no header at all, and the case tested another message."""
    with path.open("rb") as sample:
        if sample.read(len(codecs.BOM_UTF8)) != codecs.BOM_UTF8:
            return True
    ctx.error("message", f"message file {given} starts with a byte order mark (U+FEFF), "
                         "which no mail starts with: its header would read as none; save "
                         "it as UTF-8 without one")
    return False


DELIVERY_EXPECTATIONS = ("expect_headers", "expect_headers_absent", "expect_stripped")


def _expectations_hold_together(values: dict[str, Any], ctx: ObjectContext) -> bool:
    """Whether no expectation is one no verdict can meet: a limit no verdict names, a
    header both expected and expected absent, what is delivered of a message refused;
    each such is an issue (all at once) for `check` and `test`, a warning where the
    policies filter mail (a milter, an upload), where policydoc tells of limits."""
    checking = ctx.reader.check_files
    problems = [*_unmet_expectations(values, limits=checking)]
    for key, item, problem in problems:
        if checking:
            ctx.error(key, problem, item)
        else:
            ctx.warn(key, problem, TEST_EXPECTATION_UNMET, item)
    return not problems


def _unmet_expectations(values: dict[str, Any], *, limits: bool
                        ) -> Iterator[tuple[str, int | None, str]]:
    """(key, item of its list or None, why) of each expectation no verdict can meet;
    ``limits``: those of expect_rules' limits too."""
    refs = (values.get("expect_rules") or ()) if limits else ()
    for item, ref in enumerate(refs):
        if problem := limit_problem(ref):
            yield "expect_rules", item, problem
    if "expect" in values and Action(values["expect"]) in NOT_DELIVERED:
        yield from ((key, None, f"expect: {values['expect']} delivers nothing: no message to "
                                "hold or lack headers, nor attachments stripped from it")
                    for key in DELIVERY_EXPECTATIONS if key in values)
    present = {name.lower() for name in values.get("expect_headers", {})}
    yield from (("expect_headers_absent", item, f"header {name!r} is expected in "
                                                "expect_headers too: no message can meet both")
                for item, name in enumerate(values.get("expect_headers_absent", ()))
                if name.lower() in present)


def limit_problem(ref: str) -> str | None:
    """Why ``ref`` names no limit a verdict can hold (None: a rule, or such a limit)."""
    limit = ref.removeprefix("report:")
    if not limit.startswith("limit:"):
        return None
    name = limit.removeprefix("limit:")
    if name not in _LIMIT_NAMES:
        return f"unknown limit {name!r} in {ref!r} (limits: {', '.join(_LIMIT_NAMES)})"
    if name == "max_attachment_bytes" and limit == ref:
        return ("limit:max_attachment_bytes names no rule: an enforced one strips the "
                "attachment (expect_stripped says which)")
    if name == FIELDS_LIMIT and limit != ref:
        return (f"{ref!r} names no limit: {FIELDS_LIMIT} is the parser's own cap, which "
                f"no policy reports (verdicts name it limit:{FIELDS_LIMIT})")
    return None


def _ip_address(value: str) -> str:
    try:
        return client_ip_text(value)
    except ValueError as exc:  # an issue at the case's file:line, not a crash
        raise SpecError(str(exc)) from None


TEST_CASE = Obj(
    "test",
    "A sample message with its envelope and the outcome it must get.",
    {
        "name": Field(text(max_length=200), "What the case shows.", required=True),
        "message": Field(text(what="a path"), "The .eml file, relative to the policy file."),
        "raw": Field(text(max_length=1_000_000, byte_escapes=True),
                     "The message itself (instead of message); \\udc80 to \\udcff "
                     "stand for the bytes 0x80 to 0xff."),
        "sender": Field(
            text(pattern=f"<>|{ADDRESS}", what="an e-mail address or <>", hint=address_hint),
            "Envelope sender (<> by default).",
        ),
        "recipients": Field(ListOf(_ADDRESS), "Envelope recipients.", required=True),
        "client_ip": Field(Convert(text(what="an IP address"), _ip_address),
                           "The client's address."),
        "client_name": Field(text(what="a host name"), "The client's reverse DNS name."),
        "helo": Field(text(what="a host name"), "HELO/EHLO name."),
        "auth_user": Field(text(what="a SASL login name"), "SASL login (authenticated)."),
        "duplicate": Field(boolean(), "Pretend the milter has seen this message before."),
        "expect": Field(choice(*TERMINALS, hints=_NO_VERDICT), "The expected action.",
                        required=True),
        "expect_rules": Field(
            ListOf(_EXPECTED_RULE, min_items=0),
            "Exactly the rules that must match, in order.",
        ),
        "expect_reply": Field(
            _ReplyStart(), 'The start of the SMTP reply: a code (550), or text ("550 5.7.1").'
        ),
        "expect_headers": Field(
            MapOf(
                _HEADER,
                text(pattern=_HEADER_TEXT, what="a header value on one line"),
                "headers",
            ),
            "Header values (decoded) the delivered message must carry.",
        ),
        "expect_headers_absent": Field(
            ListOf(_HEADER), "Headers (by name, any case) the delivered message must not carry."
        ),
        "expect_flags": Field(
            ListOf(choice(*sorted(VERDICT_FLAGS))),
            "Flags the verdict must carry (among others: see the policy language).",
        ),
        "expect_notify": Field(
            ListOf(ENDPOINT, min_items=0),
            "Exactly the webhook endpoints notified, in any order.",
        ),
        "expect_stripped": Field(
            ListOf(text(what="a file name"), min_items=0), "File names of the attachments stripped."
        ),
    },
    _test_case,
    def_name="test",
    label_key="name",
    one_of=SAMPLE_KEYS,
    check=_case_holds_together,
)
