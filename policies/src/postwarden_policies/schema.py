"""The JSON Schema (draft 2020-12) of policy files, generated from ``policydoc.POLICY``.

The same description validates policies when they load, so the schema that
editors use (VS Code's YAML extension reads ``policies/postwarden-policy.schema.json``)
cannot drift from what the loader accepts; a test compares the checked-in file.
"""

from __future__ import annotations

import json
from typing import Any

from .policydoc import POLICY

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def policy_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    root = POLICY.schema(defs)
    return {"$schema": DRAFT, "title": "postwarden policy", **root, "$defs": defs}


def schema_text() -> str:
    return json.dumps(policy_schema(), indent=2) + "\n"
