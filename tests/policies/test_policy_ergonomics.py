"""Traps in the policy language as teams write it: values that load but do not mean what
an author who knows Postfix expects."""

from __future__ import annotations

import jsonschema
import pytest

from postwarden_policies import PolicyLoadError, load_policy_set_from_sources, policy_schema
from postwarden_policies.yamlnodes import read_plain

HEAD = "version: 1\nname: p\n"


def issues(text: str) -> list[str]:
    """The issues of one source ([] when it loads)."""
    try:
        load_policy_set_from_sources([("p.yaml", text)])
    except PolicyLoadError as exc:
        return [str(issue) for issue in exc.issues]
    return []


def schema_takes(text: str) -> bool:
    _, document, problems = read_plain("p.yaml", text)
    assert not problems
    return bool(jsonschema.Draft202012Validator(policy_schema()).is_valid(document))


@pytest.mark.parametrize(("limit", "value", "meaning"), [
    ("max_message_bytes", "0", "refuse every message"),
    ("max_message_bytes", '"0MB"', "refuse every message"),
    ("max_message_bytes", "0.0", "refuse every message"),
    ("max_attachment_bytes", '" 00 KiB"', "strip every attachment"),
])
def test_a_size_limit_of_0_is_refused_not_read_as_none(limit: str, value: str,
                                                       meaning: str) -> None:
    # Postfix's message_size_limit = 0 is no limit; a policy's refused every message (552).
    text = HEAD + f"limits:\n  {limit}: {value}\n"
    assert issues(text) == [
        f"p.yaml:4:{len(limit) + 5}: 0 would {meaning}: leave the limit out for none"]
    assert not schema_takes(text)


@pytest.mark.parametrize("value", ["1", '"1KB"', '"10 MiB"', '"0100"'])
def test_a_size_limit_above_0_loads(value: str) -> None:
    text = HEAD + f"limits: {{max_message_bytes: {value}, max_attachment_bytes: {value}}}\n"
    assert issues(text) == []
    assert schema_takes(text)


def test_a_size_condition_of_0_still_means_any_content() -> None:
    text = HEAD + "rules: [{name: r, when: {size_over: 0}, then: reject}]\n"
    assert issues(text) == []
    assert schema_takes(text)


ANCHORED = HEAD + """\
x-common:
  internal: &internal {sender_domain: [example.com, example.org]}
  refusal: &refusal "Not accepted here"
rules:
  - name: outside
    when: {not: *internal}
    then: reject
    message: *refusal
"""


def test_top_level_x_keys_hold_anchors_and_are_ignored() -> None:
    # As docker compose's extension fields: anchors need a place before their first use.
    policy_set = load_policy_set_from_sources([("p.yaml", ANCHORED)])
    (rule,) = policy_set.policies[0].rules
    assert rule.reply is not None and "Not accepted here" in str(rule.reply)
    assert schema_takes(ANCHORED)


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(HEAD + "common: &c 1\n", "p.yaml:3:1: unknown key 'common' in policy",
                 id="no-prefix"),
    pytest.param(HEAD + "rules: [{name: r, then: accept, x-note: 1}]\n",
                 "p.yaml:3:33: rule 'r': unknown key 'x-note' in rule", id="not-top-level"),
    pytest.param(HEAD + "x-base: &b {mode: report}\n<<: *b\n",
                 "p.yaml:4:1: YAML merge keys (<<) are not supported", id="merge-key"),
])
def test_other_unknown_keys_and_merge_keys_stay_refused(text: str, expected: str) -> None:
    (issue,) = issues(text)
    assert issue.startswith(expected)


def test_the_schema_takes_x_keys_at_the_top_level_only() -> None:
    assert not schema_takes(HEAD + "common: 1\n")
    assert not schema_takes(HEAD + "rules: [{name: r, then: accept, x-note: 1}]\n")
