"""Issues name the line of what is wrong: an alias at the alias, a list item at the item."""

from __future__ import annotations

from postwarden_policies import check_policy_text


def _issues(text: str) -> list[str]:
    return [str(issue) for issue in check_policy_text("p.yaml", text)]


def test_an_aliased_rule_repeating_a_name_is_reported_at_the_alias() -> None:
    text = "version: 1\nname: p\nrules:\n  - &r\n    name: dup\n    then: reject\n  - *r\n"
    assert _issues(text) == ["p.yaml:7:5: duplicate rule name 'dup' (first at line 5)"]


def test_a_flow_alias_is_reported_at_the_alias() -> None:
    text = "version: 1\nname: p\nrules: [&r {name: dup, then: reject},\n        *r]\n"
    assert _issues(text) == ["p.yaml:4:9: duplicate rule name 'dup' (first at line 3)"]


def test_a_bad_glob_is_reported_at_its_own_item() -> None:
    text = (
        "version: 1\nname: p\nrules:\n  - name: r\n    when:\n      attachment:\n"
        '        filename:\n          - "*.exe"\n          - "*.[z-a]"\n    then: reject\n'
    )
    assert _issues(text) == [
        "p.yaml:9:13: rule 'r': invalid glob list '*.[z-a]': invalid character class range: z-a"
    ]


def test_every_bad_glob_of_a_list_is_reported() -> None:
    text = (
        "version: 1\nname: p\nrules:\n  - name: r\n    when:\n"
        "      helo: ['[z-a].test', ok.test,\n             '[9-0].test']\n    then: reject\n"
    )
    assert [issue.split(": rule")[0] for issue in _issues(text)] == [
        "p.yaml:6:14", "p.yaml:7:14"
    ]
