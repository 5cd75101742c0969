"""Policy files in a subdirectory of a policy directory are not loaded, and say so: a
warning naming the subdirectory (the log's for a milter, stderr or the JSON document
for `check` and `test`), the set loading as before."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from postwarden_policies import load_policy_set
from postwarden_policies.cli import EXIT_WARNINGS, main
from postwarden_policies.errors import PolicyIssue

POLICY = "version: 1\nname: NAME\n"
WARNING = ("subdirectory not loaded: it holds {files}, but a policy directory is read "
           "without its subdirectories (name it too, or move the files up)")


def write(path: Path, name: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(POLICY.replace("NAME", name))


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    top = tmp_path / "policies"
    write(top / "base.yaml", "base")
    write(top / "team-a" / "inbound.yaml", "team-a-inbound")
    write(top / "team-a" / "nested" / "outbound.YML", "team-a-outbound")
    return top


def warnings_of(paths: list[Path]) -> tuple[list[str], list[PolicyIssue]]:
    told: list[PolicyIssue] = []
    policy_set = load_policy_set(paths, warn=told.append)
    return [p.name for p in policy_set.policies], told


def test_a_subdirectory_holding_policies_is_told_not_loaded(policies: Path) -> None:
    files = "team-a/inbound.yaml, team-a/nested/outbound.YML"
    assert warnings_of([policies]) == (
        ["base"], [PolicyIssue(str(policies / "team-a"), None, None, WARNING.format(files=files))])


def test_a_long_list_is_cut(policies: Path) -> None:
    for name in ("b", "c", "d"):
        write(policies / "team-a" / f"{name}.yaml", name)
    (warning,) = warnings_of([policies])[1]
    assert warning.message == WARNING.format(
        files="team-a/b.yaml, team-a/c.yaml, team-a/d.yaml and 2 more")


@pytest.mark.parametrize("named", ["team-a", "team-a/inbound.yaml"])
def test_files_named_on_their_own_are_loaded_and_not_told(policies: Path, named: str) -> None:
    names, told = warnings_of([policies, policies / named])
    assert "team-a-inbound" in names
    # What is left is told once, in the subdirectory of the directory named last above it.
    at, files = (("team-a/nested", "nested/outbound.YML") if named == "team-a" else
                 ("team-a", "team-a/nested/outbound.YML"))
    assert told == [PolicyIssue(str(policies / at), None, None, WARNING.format(files=files))]


def test_subdirectories_without_policy_files_and_hidden_ones_are_not_told(
    tmp_path: Path,
) -> None:
    write(tmp_path / "p.yaml", "p")
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "m.eml").write_text("Subject: x\n\nhi\n")
    write(tmp_path / ".github" / "workflows" / "ci.yml", "ci")
    write(tmp_path / "team" / ".hidden" / "x.yaml", "x")
    write(tmp_path / "team" / ".tmp.yaml", "tmp")
    (tmp_path / "team" / "loop.yaml").symlink_to(tmp_path / "team" / "loop.yaml")
    (tmp_path / "team" / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")
    assert warnings_of([tmp_path]) == (["p"], [])


def test_a_milter_loads_as_before_and_logs_it(
    policies: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="postwarden_policies.loader"):
        policy_set = load_policy_set([policies])
    assert [p.name for p in policy_set.policies] == ["base"]
    assert caplog.messages == [
        f"{policies / 'team-a'}: " + WARNING.format(
            files="team-a/inbound.yaml, team-a/nested/outbound.YML")]


def test_check_warns_and_passes(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(policies)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok: 1 policies, 0 rules")
    assert err == f"{policies / 'team-a'}: warning: " + WARNING.format(
        files="team-a/inbound.yaml, team-a/nested/outbound.YML") + " [subdirectory_not_loaded]\n"


def test_error_on_its_code_fails_check(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It had no code: only --strict could keep it out of a CI run, with every other warning."""
    assert main(["check", "--error-on", "subdirectory_not_loaded", str(policies)]) == EXIT_WARNINGS
    assert "fatal warning: subdirectory not loaded" in capsys.readouterr().err


def test_the_warning_comes_with_the_error_it_explains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every file moved into team-a/: the directory holds none, and the warning says where."""
    write(tmp_path / "team-a" / "inbound.yaml", "inbound")
    assert main(["test", "--format", "json", str(tmp_path)]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["errors"] == [{"file": str(tmp_path), "line": None, "column": None,
                                   "message": "no *.yaml or *.yml policy files"}]
    assert document["warnings"] == [{
        "file": str(tmp_path / "team-a"), "line": None, "column": None,
        "message": WARNING.format(files="team-a/inbound.yaml"), "code": "subdirectory_not_loaded",
        "fatal": False}]
