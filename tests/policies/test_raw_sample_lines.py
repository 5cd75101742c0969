"""An inline sample written with \\n where YAML reads no escapes (single quotes, no
quotes) is one header field: `check` and `test` say so at its line, rather than run
the case on a message without a body. A milter's load is not stopped by it."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies import PolicyLoadError, load_policy_set, run_policy_tests

POLICY = (
    "version: 1\nname: p\nrules:\n  - name: r\n    when: {body: hello}\n    then: reject\n"
    "tests:\n  - name: c\n    raw: RAW\n    recipients: [a@b.test]\n    expect: reject\n"
)


def _load(tmp_path: Path, raw: str, *, check: bool = True) -> list[str]:
    (tmp_path / "p.yaml").write_text(POLICY.replace("RAW", raw), encoding="utf-8")
    try:
        load_policy_set([tmp_path], check_samples=check)
    except PolicyLoadError as refused:
        return [str(i) for i in refused.issues]
    return []


def test_single_quoted_escapes_are_told(tmp_path: Path) -> None:
    """The case failed with "expected reject, got accept": the body was never one."""
    assert _load(tmp_path, r"'Subject: hi\n\nhello'") == [
        f"{tmp_path / 'p.yaml'}:9:10: test 'c': raw is one line: its \\n are a backslash "
        "and an n each, as YAML reads escapes only in double quotes; write the message in "
        'double quotes ("Subject: hi\\n\\nbody") or as a block (raw: |, its lines below)']


@pytest.mark.parametrize("raw", [
    r'"Subject: hi\n\nhello"',  # double quotes: line breaks
    "|\n      Subject: hi\n\n      hello, printf('\\n')",  # lines, and a \n in the text
    "'Subject: hi'",  # one line, and no \n written
])
def test_a_sample_with_lines_is_none_of_that(tmp_path: Path, raw: str) -> None:
    assert _load(tmp_path, raw) == []


def test_the_milter_loads_it(tmp_path: Path) -> None:
    assert _load(tmp_path, r"'Subject: hi\n\nhello'", check=False) == []
    [result] = run_policy_tests(load_policy_set([tmp_path]))
    assert not result.passed  # what the issue spares an author
