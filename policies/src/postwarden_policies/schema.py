"""The JSON Schema (draft 2020-12) of policy files, generated from ``policydoc.POLICY``.

The same description validates policies when they load, so the schema that
editors use (VS Code's YAML extension reads ``policies/postwarden-policy.schema.json``)
cannot drift from what the loader accepts; a test compares the checked-in file.
What the loader checks in code rather than in field specs (an empty condition,
a code with an action that takes none) is added here to the generated definitions,
where JSON Schema can say it.
"""

from __future__ import annotations

import json
from typing import Any

from .policydoc import POLICY
from .policyformat import EDITS, reply_code_schema
from .spec import JsonSchema
from .verdicts import NOT_DELIVERED, Action
from .yamlnodes import YAML11_BOOLEANS

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _then_is(*actions: Action) -> JsonSchema:
    """A rule whose `then` is one of ``actions``, as a name or as a mapping's action."""
    names = [action.value for action in actions]
    return {
        "required": ["then"],
        "properties": {"then": {"anyOf": [
            {"enum": names},
            {"type": "object", "required": ["action"], "properties": {"action": {"enum": names}}},
        ]}},
    }


def _only_with(key: str, *actions: Action) -> JsonSchema:
    return {"if": {"required": [key]}, "then": _then_is(*actions)}


def _code_with(action: Action, classes: str) -> JsonSchema:
    return {"if": _then_is(action), "then": {"properties": {"code": reply_code_schema(classes)}}}


# A boolean field that is false (the YAML 1.1 words too, as the loader reads them).
_FALSE = {"enum": [False, *(word for word, value in YAML11_BOOLEANS.items() if not value)]}

# By $defs name: the keywords added to each (policydoc, policyformat and
# conditionformat say why the loader refuses the rest).
_LOADER_CHECKS: dict[str, JsonSchema] = {
    "condition": {"minProperties": 1},
    "limits_condition": {"minProperties": 1},
    "limits": {"if": {"required": ["when"]}, "then": {"minProperties": 2}},
    "actions": {
        "minProperties": 1,
        "if": {"required": ["action"],
               "properties": {"action": {"enum": sorted(a.value for a in NOT_DELIVERED)}}},
        "then": {"properties": {
            key: _FALSE if key == "strip_attachment" else False for key in EDITS
        }},
    },
    "rule": {"allOf": [
        _only_with("code", Action.REJECT, Action.TEMPFAIL),
        _only_with("message", Action.REJECT, Action.TEMPFAIL, Action.QUARANTINE),
        _code_with(Action.REJECT, "5"),
        _code_with(Action.TEMPFAIL, "4"),
    ]},
}


def policy_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    root = POLICY.schema(defs)
    for name, keywords in _LOADER_CHECKS.items():
        defs[name] = {**defs[name], **keywords}
    return {"$schema": DRAFT, "title": "postwarden policy", **root, "$defs": defs}


def schema_text() -> str:
    return json.dumps(policy_schema(), indent=2) + "\n"
