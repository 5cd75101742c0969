"""The policy file format, described once: validation, model building and JSON Schema.

Reply codes: ``code: 550`` (the enhanced status defaults to 5.7.1, or 4.7.1
for tempfail) or ``code: "550 5.7.2"``; reject needs a 5xx code, tempfail a
4xx one, and the enhanced status must be of the same class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

from .conditionformat import CONDITION, HEADER_NAME, header_name_hint, list_hint
from .conditions import ALWAYS
from .headeredits import FLAGS_HEADER
from .mappingspecs import Field, MapOf, Obj, ObjectContext
from .model import (
    Actions,
    Rule,
)
from .spec import (
    INVALID,
    Convert,
    Either,
    Invalid,
    JsonSchema,
    ListOf,
    Scalar,
    Spec,
    SpecError,
    boolean,
    caseless_except,
    choice,
    got,
    text,
    whole_number,
)
from .verdicts import NOT_DELIVERED, Action, Reply, SmtpReply
from .yamlnodes import Reader

NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
# A webhook endpoint named by notify: and a test's expect_notify.
ENDPOINT = text(pattern=NAME, what="a webhook endpoint name", hint=list_hint(NAME, lambda _: ""))
PRINTABLE = r"[\t -~]+"  # one line of printable ASCII: header values, SMTP reply texts
TERMINALS = tuple(action.value for action in Action)
# Removing or adding these would change how the body is read, so a policy may not.
STRUCTURAL_HEADERS = frozenset({"content-type", "content-transfer-encoding", "mime-version"})
# [0-9], not \d: \d matches the digits of every script, and libmilter takes ASCII ones.
_CODE = re.compile(r"([245][0-9][0-9])(?:\s+([245]\.[0-9]{1,3}\.[0-9]{1,3}))?")


class ReplyCode(Spec):
    """``550`` or ``"550 5.7.1"``: read as (basic code, enhanced status or None)."""

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        value = (whole_number(node, reader.scalar(node)) if isinstance(node, yaml.ScalarNode)
                 else None)
        found = _CODE.fullmatch(str(value).strip()) if type(value) in (int, str) else None
        if found is None:
            reader.error(
                node, f'expected an SMTP code such as 550 or "550 5.7.1", got {got(node, value)}'
            )
            return INVALID
        code, status = found.groups()
        if status is not None and status[0] != code[0]:
            reader.error(node, f"enhanced status {status} does not match the class of {code}")
            return INVALID
        return code, status

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        return reply_code_schema("245")


def reply_code_schema(classes: str) -> JsonSchema:
    """Reply codes of these classes (first digits), an enhanced status of the same class."""
    numbers = [{"type": "integer", "minimum": int(c) * 100, "maximum": int(c) * 100 + 99}
               for c in classes]
    status = r"\.[0-9]{1,3}\.[0-9]{1,3}"
    texts = [{"type": "string", "pattern": rf"^\s*{c}[0-9][0-9](\s+{c}{status})?\s*$"}
             for c in classes]
    return {"anyOf": numbers + texts}


def _removable_header(name: str) -> str:
    """Checked item by item, so that each refused name is told at its own place."""
    if name.lower() in STRUCTURAL_HEADERS:
        raise SpecError(f"{name} cannot be removed: it defines how the body is read")
    return name


def _added_header_name(name: str) -> str:
    """A second Content-Type (or encoding) leaves every delivered message malformed, and
    X-Postwarden-Flags is the engine's own tag, which a rule must not forge."""
    if name.lower() in STRUCTURAL_HEADERS:
        raise SpecError(f"{name} cannot be added: it defines how the body is read")
    if name.lower() == FLAGS_HEADER.lower():
        raise SpecError(f"{name} cannot be added: postwarden adds it itself (tag_flags)")
    return name


def _header_name(refused: Iterable[str]) -> Scalar:
    """A header name an edit takes; the JSON Schema refuses ``refused`` too, as the
    edit's conversion does (in any case)."""
    return text(pattern=HEADER_NAME, what="a header name", hint=header_name_hint,
                schema_pattern=caseless_except(refused, HEADER_NAME))


# Edits in a rule whose action ends the message undelivered would be lost silently.
EDITS = ("strip_attachment", "add_header", "remove_header", "subject_prefix")


def _actions_from_name(name: str) -> Actions:
    if name == "strip_attachment":
        return Actions(strip_attachment=True)
    return Actions(terminal=Action(name))


def _actions(values: dict[str, Any], ctx: ObjectContext) -> Any:
    if not values:
        ctx.error(None, "expected at least one action in then")
        return INVALID
    if _wasted_edits(values, ctx):
        return INVALID
    return Actions(
        terminal=Action(values["action"]) if "action" in values else None,
        strip_attachment=values.get("strip_attachment", False),
        add_headers=tuple(values.get("add_header", {}).items()),
        remove_headers=values.get("remove_header", ()),
        subject_prefix=values.get("subject_prefix"),
        notify=values.get("notify", ()),
    )


def _wasted_edits(values: dict[str, Any], ctx: ObjectContext) -> bool:
    """Whether an edit comes with an action that delivers nothing (each is an issue);
    also the check of a `then` with a key that did not read, to tell them with it."""
    action = values.get("action")
    wasted = [key for key in EDITS if values.get(key)] if action in NOT_DELIVERED else []
    for key in wasted:
        ctx.error(key, f"{key} never applies with action {action}: the message is not "
                       "delivered")
    return bool(wasted)


# What other filters call the actions (Postfix's access tables: OK, DEFER, HOLD, ...).
_OTHER_NAMES = {
    other: f"postwarden calls it {ours}"
    for ours, others in (("accept", ("ok", "allow", "pass", "permit")),
                         ("reject", ("deny", "block", "refuse")),
                         ("tempfail", ("defer", "defer_if_permit", "greylist")),
                         ("discard", ("drop", "delete")),
                         ("quarantine", ("hold",)))
    for other in others
}
# `then: strip_attachment` is a rule's whole action, so `action: strip_attachment` is
# written too: it is an edit, which `then` takes as a key of its own.
_NO_TERMINAL = {"strip_attachment": "strip_attachment is an edit, not a terminal action: "
                                    "write strip_attachment: true in then", **_OTHER_NAMES}

ACTIONS = Either(
    Convert(choice(*TERMINALS, "strip_attachment", hints=_OTHER_NAMES), _actions_from_name),
    Obj(
        "then",
        "Actions of a rule: one terminal `action` at most, plus edits that accumulate.",
        {
            "action": Field(choice(*TERMINALS, hints=_NO_TERMINAL),
                            "Terminal action: evaluation stops here. With reject, tempfail "
                            "or discard the rule may have no edit (they would never apply)."),
            "strip_attachment": Field(
                boolean(),
                "Replace by a text notice the attachments this rule's condition selected "
                "(all attachments when it has no attachment condition, or when a matched "
                "`any` branch is not about attachments).",
            ),
            "add_header": Field(
                MapOf(
                    Convert(_header_name({*STRUCTURAL_HEADERS, FLAGS_HEADER}),
                            _added_header_name),
                    text(pattern=PRINTABLE, what="one line of printable ASCII", max_length=900),
                    "headers",
                ),
                "Headers to add: name -> value.",
            ),
            "remove_header": Field(
                ListOf(Convert(_header_name(STRUCTURAL_HEADERS), _removable_header)),
                "Headers to remove (every occurrence).",
            ),
            "subject_prefix": Field(
                text(pattern=r"[ -~]+", what="printable ASCII", max_length=100),
                "Put in front of the Subject unless it is already there.",
            ),
            "notify": Field(
                ListOf(ENDPOINT),
                "Webhook endpoints told about the message (delivered by the admin service).",
            ),
        },
        _actions,
        def_name="actions",
        check=_wasted_edits,
        elsewhere=dict.fromkeys(("message", "code", "sanitize", "when"),
                                "in the rule, beside then:"),
    ),
    "an action name or a mapping of actions",
)


def _rule(values: dict[str, Any], ctx: ObjectContext) -> Any:
    then: Actions = values["then"]
    terminal = then.terminal
    reply = _reply(values, terminal, ctx)
    if reply is INVALID:
        return INVALID
    return Rule(
        name=values["name"],
        when=values.get("when", ALWAYS),
        then=then,
        reply=reply,
        reason=values.get("message") if terminal is Action.QUARANTINE else None,
        sanitize=values["sanitize"],
        description=values.get("description", ""),
        where=ctx.where("name"),
    )


def _reply(values: dict[str, Any], terminal: Action | None, ctx: ObjectContext) -> Any:
    """The SMTP reply of a rule ending in ``terminal`` (None for other actions), or
    INVALID after an issue with ``code`` or ``message``."""
    ok = True
    if "code" in values and terminal not in (Action.REJECT, Action.TEMPFAIL):
        ctx.error("code", "code is only allowed with reject or tempfail")
        ok = False
    if "message" in values and terminal not in (Action.REJECT, Action.TEMPFAIL, Action.QUARANTINE):
        ctx.error("message", "message is only allowed with reject, tempfail or quarantine")
        ok = False
    reply: SmtpReply | None = None
    if ok and terminal in (Action.REJECT, Action.TEMPFAIL):
        default = (Reply.REJECTED if terminal is Action.REJECT else Reply.TEMPFAIL).reply
        code, status = values.get("code", (default.code, None))
        if code[0] != default.code[0]:
            ctx.error("code", f"{terminal} needs a {default.code[0]}xx code, got {code}")
            ok = False
        reply = SmtpReply(code, status or default.status, values.get("message", default.text))
    return reply if ok else INVALID


def _check_rule(values: dict[str, Any], ctx: ObjectContext) -> None:
    """A rule with a field that did not read: its code and message are still checked
    against its action, when `then` names one that reads (beside an edit it refuses)."""
    then: Actions | None = values.get("then")
    terminal = then.terminal if then is not None else _written_action(ctx)
    if not isinstance(terminal, Invalid):
        _reply(values, terminal, ctx)


def _written_action(ctx: ObjectContext) -> Action | Invalid | None:
    """The terminal action a `then` that did not read names: None when it names none,
    INVALID when it is not known (the action is misspelt, or `then` is missing)."""
    node = ctx.fields.get("then")
    if isinstance(node, yaml.MappingNode):
        named = [value for key, value in node.value
                 if isinstance(key, yaml.ScalarNode) and key.value == "action"]
        if not named:
            return None
        node = named[0]
    value = ctx.reader.scalar(node) if isinstance(node, yaml.ScalarNode) else None
    return Action(value) if value in TERMINALS else INVALID


RULE = Obj(
    "rule",
    "One rule: when every condition holds, the actions run.",
    {
        "name": Field(
            text(pattern=NAME, what="a rule name (letters, digits, . _ -)", max_length=100),
            "Unique name, shown in verdicts and audit rows.",
            required=True,
        ),
        "description": Field(text(), "What the rule is for."),
        "when": Field(CONDITION, "Conditions (ANDed); omitted = every message.", default=None),
        "then": Field(ACTIONS, "An action name, or a mapping of actions.", required=True),
        "code": Field(ReplyCode(), 'SMTP code for reject/tempfail: 550 or "550 5.7.1".'),
        "message": Field(
            text(pattern=PRINTABLE, what="one line of printable ASCII", max_length=200),
            "SMTP reply text (reject, tempfail) or quarantine reason.",
        ),
        "sanitize": Field(
            boolean(), "false: do not sanitize messages this rule matches.", default=True
        ),
    },
    _rule,
    def_name="rule",
    label_key="name",
    check=_check_rule,
    elsewhere={
        **dict.fromkeys(
            ("action", "strip_attachment", "add_header", "remove_header", "subject_prefix",
             "notify"),
            "under then:, as in then: {action: quarantine, notify: [...]}"),
        # indented as when: is, not under it
        **dict.fromkeys(CONDITION.fields, "under when:, indented past it"),
    },
)
