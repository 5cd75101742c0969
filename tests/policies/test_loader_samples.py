"""`tests:` sample files are checked where tests run (`check`, `test`), not where mail is
filtered: a policy_dir holding only the *.yaml files loads."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from postwarden_policies import PolicyLoadError, load_policy_set
from postwarden_policies.cli import main

POLICY = (
    "version: 1\nname: p\nrules:\n  - name: r\n    then: reject\ntests:\n"
    "  - name: c\n    message: samples/m.eml\n    recipients: [a@b.test]\n    expect: reject\n"
)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "p.yaml").write_text(POLICY)  # samples/ not copied, as in a deployment
    return tmp_path


def test_the_milter_load_does_not_need_the_samples(policy_dir: Path) -> None:
    (policy,) = load_policy_set([policy_dir]).policies
    assert [rule.name for rule in policy.rules] == ["r"]
    assert policy.tests[0].message == policy_dir / "samples" / "m.eml"


def test_a_load_that_checks_samples_names_the_missing_file(policy_dir: Path) -> None:
    with pytest.raises(PolicyLoadError) as refused:
        load_policy_set([policy_dir], check_samples=True)
    assert [str(i) for i in refused.value.issues] == [
        f"{policy_dir / 'p.yaml'}:8:14: test 'c': message file not found: samples/m.eml"
    ]


def test_a_missing_sample_is_told_on_its_issue_line_alone(tmp_path: Path) -> None:
    # Printed as written, the line break split the issue and forged one of its own.
    (tmp_path / "p.yaml").write_text(POLICY.replace(
        "samples/m.eml", '"m\\nq.yaml:1:1: fine.eml"'))
    with pytest.raises(PolicyLoadError) as refused:
        load_policy_set([tmp_path], check_samples=True)
    assert [str(i) for i in refused.value.issues] == [
        f"{tmp_path / 'p.yaml'}:8:14: test 'c': message file not found: "
        "m\\nq.yaml:1:1: fine.eml"
    ]


@pytest.mark.parametrize("command", ["check", "test"])
def test_check_and_test_refuse_a_missing_sample(
    policy_dir: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, str(policy_dir)]) == 2
    assert "message file not found: samples/m.eml" in capsys.readouterr().err


def test_check_passes_once_the_sample_is_there(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (policy_dir / "samples").mkdir()
    (policy_dir / "samples" / "m.eml").write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    assert main(["test", str(policy_dir)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 0 failed"


def test_a_sample_is_found_next_to_the_file_a_link_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A repository sharing a policy between hosts by a symbolic link (mx1/p.yaml ->
    ../common/p.yaml): its message: paths are written from where the file is, as for
    every other reader of it; they were looked for next to the link."""
    common, mx1 = tmp_path / "common", tmp_path / "mx1"
    (common / "samples").mkdir(parents=True)
    mx1.mkdir()
    (common / "p.yaml").write_text(POLICY)
    (common / "samples" / "m.eml").write_bytes(b"Subject: x\n\nhi\n")
    (mx1 / "p.yaml").symlink_to(Path("..", "common", "p.yaml"))
    assert main(["test", str(mx1)]) == 0, capsys.readouterr().err
    # As a milter (and eval) loads the file: the same path.
    (policy,) = load_policy_set([mx1]).policies
    assert policy.tests[0].message == common / "samples" / "m.eml"
    assert policy.source == str(mx1 / "p.yaml")  # issues name the file as given


def test_a_sample_path_naming_a_directory_says_so(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was "message file not found", for a path that is there (a directory named
    where its file was meant)."""
    (policy_dir / "samples" / "m.eml").mkdir(parents=True)
    assert main(["check", str(policy_dir)]) == 2
    assert capsys.readouterr().err == (
        f"{policy_dir / 'p.yaml'}:8:14: test 'c': message file samples/m.eml is a directory\n")


@pytest.mark.parametrize("make", [
    os.mkfifo,
    lambda sample: sample.symlink_to("gone.eml"),
    lambda sample: sample.symlink_to("/dev/null"),
])
def test_a_sample_path_naming_no_regular_file_says_so(
    policy_dir: Path, capsys: pytest.CaptureFixture[str], make: Callable[[Path], None]
) -> None:
    """It was "message file not found", for a path that is there (a FIFO, which test
    would wait on for ever, a device, a link to a file since removed)."""
    (policy_dir / "samples").mkdir()
    make(policy_dir / "samples" / "m.eml")
    assert main(["check", str(policy_dir)]) == 2
    assert capsys.readouterr().err == (
        f"{policy_dir / 'p.yaml'}:8:14: test 'c': message file samples/m.eml is not a regular "
        "file (a FIFO, a device, a broken symbolic link?)\n")


def test_a_sample_saved_with_a_byte_order_mark_is_told(policy_dir: Path) -> None:
    """Notepad's UTF-8 starts the file with one: the case failed with "expected reject,
    got accept" and flags no_headers, its header read as none."""
    (policy_dir / "samples").mkdir()
    (policy_dir / "samples" / "m.eml").write_bytes(
        b"\xef\xbb\xbfFrom: a@b.test\r\nSubject: hi\r\n\r\nhello\r\n")
    with pytest.raises(PolicyLoadError) as refused:
        load_policy_set([policy_dir], check_samples=True)
    assert [str(i) for i in refused.value.issues] == [
        f"{policy_dir / 'p.yaml'}:8:14: test 'c': message file samples/m.eml starts with a "
        "byte order mark (U+FEFF), which no mail starts with: its header would read as none; "
        "save it as UTF-8 without one"]
    assert load_policy_set([policy_dir]).policies[0].name == "p"  # the milter's load
