"""A message's size as the milter counts it: Postfix hands a milter every line ended by
CRLF, whatever the client sent, so a sample kept with LF line ends (as git checks an
.eml out on Linux) or without a final line end is measured so by `test` and `eval`."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies import load_policy_set_from_sources, run_policy_tests
from postwarden_policies.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy-language.md"

LINES = 20
MESSAGE = "Subject: x\\n\\n" + "line\\n" * LINES  # 112 bytes with LF, 134 with CRLF
POLICY = f"""version: 1
name: p
rules:
  - name: big
    when: {{size_over: 120}}
    then: reject
  - name: tag
    then: {{add_header: {{X-T: "1"}}}}
tests:
  - name: over the limit once received
    raw: "{MESSAGE}"
    recipients: [a@b.test]
    expect: reject
  - name: the last line without its line end
    raw: "Subject: x\\n\\n{"l" * 106}"
    recipients: [a@b.test]
    expect: reject
"""


def test_a_case_measures_its_message_as_the_milter_gets_it() -> None:
    results = run_policy_tests(load_policy_set_from_sources([("p.yaml", POLICY)]))
    assert [r.problems for r in results] == [(), ()]
    assert "every line ended by CRLF, the last one too" in " ".join(DOC.read_text().split())


def test_eval_measures_a_file_as_the_milter_gets_it_and_keeps_its_line_ends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    sample = tmp_path / "m.eml"
    sample.write_bytes(b"Subject: x\n\n" + b"line\n" * LINES)
    argv = ["eval", "--policy", str(tmp_path / "p.yaml"), "--from", "<>", "--to", "a@b.test"]
    assert main([*argv, str(sample)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "action: reject"
    sample.write_bytes(b"Subject: x\n\nline\n")
    out = tmp_path / "out.eml"
    assert main([*argv, "--output", str(out), str(sample)]) == 0
    assert out.read_bytes() == b"Subject: x\nX-T: 1\n\nline\n"
