"""A policy that sanitizes HTML without holding malformed mail: a malformed message is
never sanitized, so one bad part (an attachment whose base64 does not decode) got a
message's HTML delivered with its <script>, and nothing said so. It loads, as before,
with a warning at its `html: true` saying what to add."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies.cli import main
from postwarden_policies.errors import MALFORMED_UNSANITIZED
from postwarden_policies.loader import load_policy_set_from_sources
from postwarden_policies.yamlnodes import PolicyIssue

SANITIZING = "version: 1\nname: p\nsanitize:\n  html: true\n"
HOLD = "  - name: hold-broken-mime\n    when: {flag: [malformed]}\n    then: quarantine\n"


def _warnings(*sources: tuple[str, str]) -> list[PolicyIssue]:
    found: list[PolicyIssue] = []
    load_policy_set_from_sources(list(sources), warn=found.append)
    return found


def test_sanitizing_without_holding_malformed_mail_is_a_warning() -> None:
    [warning] = _warnings(("p.yaml", SANITIZING))
    assert (warning.file, warning.line, warning.column) == ("p.yaml", 4, 9)
    assert warning.code == MALFORMED_UNSANITIZED
    assert "{name: hold-broken-mime, when: {flag: [malformed]}, then: quarantine}" in (
        warning.message)


def _codes(*sources: tuple[str, str]) -> list[str]:
    return [warning.code for warning in _warnings(*sources)]


# Each case beside the one it differs from, which warns: a test that could not fail
# before the warning existed would prove nothing.
@pytest.mark.parametrize("rule", [
    HOLD,
    "  - name: r\n    when: {flag: [bare_cr, malformed]}\n    then: reject\n",
    "  - name: r\n    when: {flag: malformed}\n    then: tempfail\n",
    "  - name: r\n    when: {flag: [malformed]}\n    then: discard\n",
])
def test_a_rule_holding_every_malformed_message_silences_it(rule: str) -> None:
    assert _codes(("p.yaml", SANITIZING)) == [MALFORMED_UNSANITIZED]
    assert _codes(("p.yaml", SANITIZING + "rules:\n" + rule)) == []


def test_a_rule_in_another_enforced_policy_of_the_set_silences_it() -> None:
    other = "version: 1\nname: q\n"
    assert _codes(("p.yaml", SANITIZING), ("q.yaml", other)) == [MALFORMED_UNSANITIZED]
    assert _codes(("p.yaml", SANITIZING), ("q.yaml", other + "rules:\n" + HOLD)) == []


@pytest.mark.parametrize("rules", [
    # More conditions: only some malformed messages are held.
    "  - name: r\n    when: {flag: [malformed], sender_domain: [example.com]}\n"
    "    then: quarantine\n",
    "  - name: r\n    when: {flag: [malformed]}\n    then: accept\n",
    "  - name: r\n    when: {flag: [malformed]}\n    then: {subject_prefix: '[bad] '}\n",
    # An accept before it ends evaluation first, for the mail it takes.
    "  - name: partner\n    when: {sender_domain: [partner.example]}\n    then: accept\n" + HOLD,
])
def test_a_rule_holding_only_some_malformed_messages_leaves_it(rules: str) -> None:
    [warning] = _warnings(("p.yaml", SANITIZING + "rules:\n" + rules))
    assert warning.code == MALFORMED_UNSANITIZED


def test_a_report_mode_rule_leaves_it() -> None:
    trial = "version: 1\nname: q\nmode: report\nrules:\n" + HOLD
    [warning] = _warnings(("p.yaml", SANITIZING), ("q.yaml", trial))
    assert (warning.file, warning.code) == ("p.yaml", MALFORMED_UNSANITIZED)


def test_a_set_that_sanitizes_nothing_warns_of_nothing() -> None:
    # Report mode changes no message: its html: true sanitizes nothing.
    assert _codes(("p.yaml", SANITIZING)) == [MALFORMED_UNSANITIZED]
    assert _codes(("p.yaml", SANITIZING.replace("name: p", "name: p\nmode: report"))) == []
    assert _codes(("p.yaml", SANITIZING.replace("true", "false"))) == []


def test_check_prints_it_at_the_sanitize_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(SANITIZING)
    assert main(["check", str(policy)]) == 0
    assert capsys.readouterr().err.startswith(
        f"{policy}:4:9: warning: malformed messages are never sanitized")
