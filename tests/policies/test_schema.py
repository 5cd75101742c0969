"""The JSON Schema: generated from the format description, checked in, and usable."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from postwarden_policies import PolicyLoadError, load_policy_set_from_sources, policy_schema
from postwarden_policies.schema import schema_text

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "policies" / "postwarden-policy.schema.json"
EXAMPLES = sorted((ROOT / "policies" / "examples").glob("*.yaml"))


def test_checked_in_schema_is_current() -> None:
    # Regenerate with: postwarden-policy schema > policies/postwarden-policy.schema.json
    assert CHECKED_IN.read_text(encoding="utf-8") == schema_text()


def test_schema_is_valid_draft_2020_12() -> None:
    schema = policy_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert sorted(schema["$defs"]) == [
        "actions",
        "attachment",
        "condition",
        "limits",
        "limits_condition",
        "rule",
        "sanitize",
        "test",
    ]


def test_the_examples_are_found() -> None:
    """An empty EXAMPLES would leave the parametrized test below with nothing to run."""
    assert {"inbound-default.yaml", "outbound-submission.yaml"} <= {p.name for p in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate(path: Path) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(policy_schema()).validate(document)


INVALID = [
    pytest.param({"version": 1, "name": "p", "rulez": []}, id="unknown-key"),
    pytest.param({"version": 2, "name": "p"}, id="version"),
    pytest.param({"version": 1, "name": "has space"}, id="name-pattern"),
    pytest.param(
        {"version": 1, "name": "p", "rules": [{"name": "r", "then": "bounce"}]}, id="action"
    ),
    pytest.param(
        {
            "version": 1,
            "name": "p",
            "rules": [{"name": "r", "when": {"nott": {}}, "then": "accept"}],
        },
        id="condition-key",
    ),
    pytest.param({"version": 1, "name": "p", "limits": {"max_message_bytes": "ten"}}, id="size"),
    # As the loader: a case gives its message as a file or inline, exactly one of them.
    pytest.param({"version": 1, "name": "p", "tests": [
        {"name": "c", "expect": "accept", "recipients": ["a@b.test"]}]},
        id="case-without-message"),
    pytest.param({"version": 1, "name": "p", "tests": [
        {"name": "c", "expect": "accept", "recipients": ["a@b.test"], "message": "m.eml",
         "raw": "Subject: x\n\nx"}]},
        id="case-with-both-messages"),
]


@pytest.mark.parametrize("document", INVALID)
def test_schema_refuses(document: dict[str, object]) -> None:
    errors = list(jsonschema.Draft202012Validator(policy_schema()).iter_errors(document))
    assert len(errors) == 1


def test_sizes_and_codes_in_both_forms_validate() -> None:
    document = {
        "version": 1,
        "name": "p",
        "limits": {"max_message_bytes": "25MB", "max_attachment_bytes": 1024},
        "rules": [
            {"name": "a", "then": "reject", "code": 554},
            {"name": "b", "then": {"action": "reject"}, "code": "550 5.7.2"},
            {"name": "c", "when": {"not": {"any": [{"sender": "x@y.test"}]}}, "then": "accept"},
        ],
    }
    jsonschema.Draft202012Validator(policy_schema()).validate(document)
    assert json.loads(schema_text()) == policy_schema()


@pytest.mark.parametrize("size", ["10 KIB", "10kib", "10 KiB", "10mB", "3 g"])
def test_a_size_the_loader_takes_in_any_case_validates(size: str) -> None:
    text = f"version: 1\nname: p\nlimits: {{max_message_bytes: {size}}}\n"
    load_policy_set_from_sources([("p.yaml", text)])  # the loader takes it: so must the schema
    document = {"version": 1, "name": "p", "limits": {"max_message_bytes": size}}
    jsonschema.Draft202012Validator(policy_schema()).validate(document)


@pytest.mark.parametrize("word", ["yes", "No", "ON", "off"])
def test_a_yaml_1_1_boolean_the_loader_takes_validates(word: str) -> None:
    text = (f"version: 1\nname: p\ntag_flags: {word}\nsanitize: {{html: {word}}}\n"
            f"rules:\n  - {{name: r, when: {{authenticated: {word}}}, then: accept}}\n")
    load_policy_set_from_sources([("p.yaml", text)])  # the loader takes it: so must the schema
    document = {"version": 1, "name": "p", "tag_flags": word, "sanitize": {"html": word},
                "rules": [{"name": "r", "when": {"authenticated": word}, "then": "accept"}]}
    jsonschema.Draft202012Validator(policy_schema()).validate(document)


def test_unicode_domains_and_header_values_validate() -> None:
    document = {
        "version": 1,
        "name": "p",
        "rules": [{"name": "r", "when": {"sender_domain": ["bücher.example"]}, "then": "reject"}],
        "tests": [
            {
                "name": "c",
                "raw": "x",
                "recipients": ["a@b.test"],
                "expect": "accept",
                "expect_headers": {"Subject": "[EXT] Réunion"},
            }
        ],
    }
    jsonschema.Draft202012Validator(policy_schema()).validate(document)


def _doc_row(section: str, key: str) -> str:
    """The row of ``key`` in the first table after the heading ``section``."""
    text = (ROOT / "docs" / "policy-language.md").read_text(encoding="utf-8")
    after = text[text.index(f"\n{section}\n"):]
    return next(line for line in after.splitlines() if line.startswith(f"| `{key}` |"))


@pytest.mark.parametrize(("section", "key", "where"), [
    ("## Tests (`tests`)", "name", ("test", "name")),
    ("## Tests (`tests`)", "raw", ("test", "raw")),
    ("## Rules", "name", ("rule", "name")),
    ("## Rules", "message", ("rule", "message")),
])
def test_the_docs_give_each_length_bound_the_schema_does(
    section: str, key: str, where: tuple[str, str]
) -> None:
    definition, field = where
    bound = policy_schema()["$defs"][definition]["properties"][field]["maxLength"]
    assert f"≤ {bound:,} chars" in _doc_row(section, key)


def test_the_docs_give_the_bound_of_other_text() -> None:
    """A description, a pattern, a glob: the bound of text that names none of its own."""
    schema = policy_schema()
    bound = schema["properties"]["description"]["maxLength"]
    assert schema["$defs"]["rule"]["properties"]["description"]["maxLength"] == bound
    assert _doc_row("## Top level", "description").split("|")[2].strip() == "text"
    text = (ROOT / "docs" / "policy-language.md").read_text(encoding="utf-8")
    assert f"| text | a string, not empty, of at most {bound} characters unless" in text


REFUSED_BY_WORD = [
    pytest.param("rules: [{name: r, then: {remove_header: [content-TYPE]}}]",
                 id="remove-structural"),
    pytest.param("rules: [{name: r, then: {add_header: {Mime-Version: '2.0'}}}]",
                 id="add-structural"),
    pytest.param("rules: [{name: r, then: {add_header: {x-postwarden-flags: clean}}}]",
                 id="add-flags-header"),
    pytest.param("sanitize: {allowed_url_schemes: [https, JavaScript]}", id="forbidden-scheme"),
    pytest.param("rules: [{name: r, when: {sender: ['*@spam.test']}, then: reject}]",
                 id="address-glob"),
    pytest.param("rules: [{name: r, when: {recipient: ['a?@b.test']}, then: reject}]",
                 id="recipient-glob"),
]


@pytest.mark.parametrize("extra", REFUSED_BY_WORD)
def test_the_schema_refuses_what_the_loader_refuses_by_a_word(extra: str) -> None:
    """What JSON Schema can say (docs/policy-language.md): an editor marks it, as check does."""
    text = f"version: 1\nname: p\n{extra}\n"
    with pytest.raises(PolicyLoadError):
        load_policy_set_from_sources([("p.yaml", text)])
    errors = list(jsonschema.Draft202012Validator(policy_schema()).iter_errors(
        yaml.safe_load(text)))
    assert len(errors) == 1
