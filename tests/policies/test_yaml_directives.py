"""A %YAML directive is YAML 1.2 or a load error at its line: policies are read as 1.2."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies import PolicyLoadError, check_policy_text, load_policy_set
from postwarden_policies.yamlnodes import read_plain

POLICY = "version: 1\nname: p\nrules:\n  - {name: r, when: {header: {X-Flag: yes}}, then: reject}\n"
READ_AS_1_2 = "postwarden reads YAML 1.2 only"


def _issues(text: str) -> list[str]:
    return [str(issue) for issue in check_policy_text("p.yaml", text)]


def test_a_yaml_1_1_directive_is_refused_at_its_line_in_a_file(tmp_path: Path) -> None:
    # Read as 1.2, X-Flag: yes would be the text "yes", not YAML 1.1's true.
    path = tmp_path / "p.yaml"
    path.write_text("# inbound\n%YAML 1.1\n---\n" + POLICY)
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set([path])
    assert [str(issue) for issue in raised.value.issues] == [
        f"{path}:2:1: %YAML 1.1: {READ_AS_1_2} (YAML 1.1 reads 010 as eight and yes, no, "
        "on and off as booleans): write %YAML 1.2 or remove the line"
    ]


@pytest.mark.parametrize("version", ["1.0", "1.3", "2.0"])
def test_another_yaml_version_is_refused_at_its_line(version: str) -> None:
    # 2.0 is refused by the YAML parser itself; said the same way.
    assert _issues(f"%TAG !e! tag:example.com,2000:\n%YAML {version} # new\n---\n"
                   + POLICY) == [
        f"p.yaml:2:1: %YAML {version}: {READ_AS_1_2}: write %YAML 1.2 or remove the line"
    ]


def test_a_directive_after_a_byte_order_mark_is_placed_at_column_1() -> None:
    assert _issues("\ufeff%YAML 1.3\n---\n" + POLICY) == [
        f"p.yaml:1:1: %YAML 1.3: {READ_AS_1_2}: write %YAML 1.2 or remove the line"
    ]


def test_an_unknown_directive_is_refused_at_its_line() -> None:
    assert _issues("%YAML 1.2\n%FOO bar\n---\n" + POLICY) == [
        "p.yaml:2:1: unknown directive %FOO: YAML defines %YAML and %TAG only"
    ]


@pytest.mark.parametrize("head", ["%YAML 1.2\n---\n", "\ufeff%YAML 1.2\n---\n",
                                  "%TAG ! tag:yaml.org,2002:\n---\n", "---\n", ""])
def test_yaml_1_2_and_tag_directives_load(head: str) -> None:
    assert _issues(head + POLICY) == []


def test_a_line_like_a_directive_inside_a_value_is_text() -> None:
    text = POLICY.replace("rules:", "description: |\n  %YAML 1.1\nrules:")
    assert _issues(text) == []


def test_settings_files_refuse_a_yaml_1_1_directive_too() -> None:
    _, value, issues = read_plain("s.yaml", "%YAML 1.1\n---\nsanitize: on\n")
    assert value is None
    assert [(i.line, i.message.split(":")[0]) for i in issues] == [(1, "%YAML 1.1")]
    assert "polic" not in issues[0].message  # a settings file is no policy


@pytest.mark.parametrize("head", ["%YAML 1.2\n", "%TAG ! tag:example.com,2000:\n# ours\n"])
def test_a_directive_without_a_document_start_says_so(head: str) -> None:
    [issue] = _issues(head + POLICY)
    assert issue.endswith("(after a %YAML or %TAG line, or a ... line, a document starts "
                          "with ---)")
    assert issue.startswith(f"p.yaml:{head.count(chr(10)) + 1}:1: YAML syntax error: "
                            "expected '<document start>', but found")
