"""`eval --output FILE`: the delivered message, or no FILE at all when none is delivered."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies.cli import main

REJECT = "version: 1\nname: p\nrules:\n  - name: r\n    when: {subject: bad}\n    then: reject\n"


@pytest.fixture
def args(tmp_path: Path) -> list[str]:
    (tmp_path / "p.yaml").write_text(REJECT)
    return ["eval", "--policy", str(tmp_path), "--from", "a@b.test", "--to", "c@d.test"]


def _message(tmp_path: Path, subject: str) -> str:
    path = tmp_path / f"{subject}.eml"
    path.write_bytes(f"Subject: {subject}\r\n\r\nbody\r\n".encode())
    return str(path)


def test_a_rejected_message_removes_the_file_of_an_earlier_run(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.eml"
    assert main([*args, "--output", str(out), _message(tmp_path, "good")]) == 0
    assert out.read_bytes() == b"Subject: good\r\n\r\nbody\r\n"
    assert main([*args, "--output", str(out), _message(tmp_path, "bad")]) == 0
    assert not out.exists()
    assert capsys.readouterr().err == "not written: the message is not delivered (reject)\n"


def test_an_unwritable_output_is_an_error(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "out.eml"
    assert main([*args, "--output", str(out), _message(tmp_path, "good")]) == 74
    assert capsys.readouterr().err == f"{out}: cannot write: No such file or directory\n"
