"""What the documents show is what the code does: SECURITY.md's tests exist, the
README's policy session prints what it shows, and the policy language's examples load
and decide as its text says."""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
from pathlib import Path

import pytest

from postwarden_policies import evaluate_message, load_policy_set_from_sources
from postwarden_policies.cli import main
from postwarden_policies.facts import Envelope

REPO = Path(__file__).resolve().parent.parent
# `tests/x/test_y.py`, `tests/x/test_y.py::test_z`, or `::test_z` for the file named
# last before it on the line.
_REFERENCE = re.compile(r"(tests/[\w/]+\.py)?(?:::(\w+))?")


def test_every_test_security_md_names_exists() -> None:
    missing, checked = [], 0
    for number, line in enumerate((REPO / "SECURITY.md").read_text().splitlines(), 1):
        current: str | None = None
        for quoted in line.split("`")[1::2]:  # the code spans
            if not quoted.startswith(("tests/", "::")):
                continue
            reference = _REFERENCE.fullmatch(quoted)
            assert reference is not None, f"SECURITY.md:{number}: unread reference {quoted}"
            path, name = reference[1] or current, reference[2]
            assert path is not None, f"SECURITY.md:{number}: {quoted} names no file before it"
            current = path
            if not (REPO / path).is_file():
                missing.append(f"SECURITY.md:{number}: {path}")
            elif name is not None and not re.search(
                    rf"^(?:async )?def {name}\(", (REPO / path).read_text(), re.M):
                missing.append(f"SECURITY.md:{number}: {path}::{name}")
            checked += 1
    assert not missing
    assert checked > 100  # the references were found at all


def _readme_session() -> list[tuple[list[str], list[str]]]:
    """Each `$ .venv/bin/postwarden-policy ...` command of the README (continued over
    lines ending in a backslash) with the output lines it shows."""
    sessions: list[tuple[list[str], list[str]]] = []
    command: str | None = None
    for line in (REPO / "README.md").read_text().splitlines():
        if command is not None and command.endswith("\\"):
            command = command[:-1] + line.strip()
            if not line.endswith("\\"):
                sessions.append((shlex.split(command)[1:], []))
            continue
        if line.startswith("$ .venv/bin/postwarden-policy "):
            command = line[2:].strip()
            if not command.endswith("\\"):
                sessions.append((shlex.split(command)[1:], []))
        elif line.startswith("```"):
            command = None
        elif command is not None:
            sessions[-1][1].append(line)
    return sessions


def test_the_readme_policy_session_prints_what_it_shows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Shown lines appear in order in the real output; `...` stands for lines left out."""
    monkeypatch.chdir(REPO)
    sessions = _readme_session()
    assert [argv[0] for argv, _ in sessions] == ["check", "test", "eval"]
    for argv, shown in sessions:
        assert main(argv) == 0, argv
        printed = capsys.readouterr().out.splitlines()
        if "..." not in shown:
            assert printed == shown, argv
            continue
        cut = shown.index("...")
        assert printed[:cut] == shown[:cut], argv
        assert printed[len(printed) - len(shown[cut + 1:]):] == shown[cut + 1:], argv


def test_the_readme_check_error_is_what_check_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (REPO / "README.md").read_text()
    shown = re.search(r"^inbound-default\.yaml:\d+:\d+: .*'strip_atachment' "
                      r"\(did you mean 'strip_attachment'\?\)$", readme, re.M)
    assert shown is not None
    examples = shutil.copytree(REPO / "policies" / "examples", tmp_path / "examples")
    broken = examples / "inbound-default.yaml"
    policy = broken.read_text()
    assert policy.count("then: strip_attachment") == 1
    broken.write_text(policy.replace("then: strip_attachment", "then: strip_atachment"))
    assert main(["check", str(broken)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"{examples}/{shown[0]}"]


def _cases(path: str, name: str) -> int:
    """How many cases pytest makes of ``path::name`` (its parametrize marks multiplied)."""
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    count = 1
    for mark in getattr(getattr(module, name), "pytestmark", []):
        if mark.name == "parametrize":
            count *= len(mark.args[1])
    return count


def test_the_counts_security_md_gives_are_the_tests_counts() -> None:
    """`tests/x.py::test_y` (N cases) or (N URLs): N is what the test runs."""
    counted = re.findall(r"`(tests/[\w/]+\.py)::(\w+)` \((\d+) (?:cases|URLs)\)",
                         (REPO / "SECURITY.md").read_text())
    assert len(counted) >= 2
    assert [(path, name, int(n)) for path, name, n in counted] == [
        (path, name, _cases(path, name)) for path, name, _ in counted]


def _policy_language_examples() -> list[str]:
    """The ```yaml blocks of docs/policy-language.md."""
    text = (REPO / "docs" / "policy-language.md").read_text(encoding="utf-8")
    return re.findall(r"^```yaml\n(.*?)^```$", text, re.M | re.S)


def test_the_policy_language_examples_load_and_decide_as_the_text_says() -> None:
    """The schema line is a comment any policy may start with; the x- anchor example,
    given the version and name it leaves out, rejects mail from outside only."""
    schema_line, anchors = _policy_language_examples()
    assert (REPO / "policies" / "examples" / schema_line.split("$schema=")[1].strip()).is_file()
    policies = load_policy_set_from_sources(
        [("doc.yaml", f"{schema_line}version: 1\nname: doc\n{anchors}")])
    message = b"From: a@example.org\r\nSubject: hi\r\n\r\nhi\r\n"
    decided = {sender: evaluate_message(policies, message, Envelope(
        sender=sender, recipients=("bob@example.com",))).action
        for sender in ("ann@example.org", "eve@elsewhere.test")}
    assert decided == {"ann@example.org": "accept", "eve@elsewhere.test": "reject"}
