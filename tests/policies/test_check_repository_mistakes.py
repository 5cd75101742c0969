"""``postwarden-policy check`` on what a team's repository holds after a bad merge or a
Makefile naming files twice: the merge conflict is named at its marker, whether YAML
would have refused it lines away or read it as text; a file named twice is one policy,
not every name "also used at" itself; and a name two files use is reported with the
other problems of the file that repeats it, not on the CI run after they are fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies import check_policy_text
from postwarden_policies.cli import main
from postwarden_policies.policyset import content_hash

RULES = """version: 1
name: team-inbound
rules:
  - name: block-exe
    when:
      attachment:
        filename: ["*.exe"]
    then: reject
"""


def check(paths: list[Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", *map(str, paths)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_conflict_between_rules_is_named_at_its_marker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], newline: str
) -> None:
    conflicted = RULES.replace("    then: reject\n", "<<<<<<< HEAD\n    then: reject\n=======\n"
                               "    then: quarantine\n>>>>>>> feature/quarantine\n")
    (tmp_path / "inbound.yaml").write_bytes(conflicted.replace("\n", newline).encode())
    assert check([tmp_path], capsys) == (2, f"{tmp_path / 'inbound.yaml'}:8:1: merge conflict "
                                            "marker '<<<<<<<': the file holds an unresolved "
                                            "conflict\n")


def test_a_conflict_inside_a_quoted_value_is_not_read_as_text() -> None:
    """YAML reads the markers of a quoted value spanning lines as its text: this loaded."""
    text = ('version: 1\nname: team-inbound\ndescription: "inbound\n<<<<<<< HEAD\nmail\n'
            '||||||| base\n=======\nchecks\n>>>>>>> other\n"\n')
    assert [str(i) for i in check_policy_text("stored", text)] == [
        "stored:4:1: merge conflict marker '<<<<<<<': the file holds an unresolved conflict"]


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"])
def test_an_upload_names_a_conflict_where_check_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], newline: str
) -> None:
    """Uploads and pushes are read as sent: after a lone CR (old Mac line ends) the marker
    was missed there, and the quoted value loaded both sides, though check refused it."""
    text = ('version: 1\nname: team-inbound\ndescription: "inbound\n<<<<<<< HEAD\nmail\n'
            '=======\nchecks\n>>>>>>> other\n"\n').replace("\n", newline)
    (tmp_path / "inbound.yaml").write_bytes(text.encode())
    marker = "4:1: merge conflict marker '<<<<<<<': the file holds an unresolved conflict"
    assert check([tmp_path], capsys) == (2, f"{tmp_path / 'inbound.yaml'}:{marker}\n")
    assert [str(i) for i in check_policy_text("upload", text)] == [f"upload:{marker}"]


@pytest.mark.parametrize("bom", ["", "\ufeff"], ids=["plain", "byte-order-mark"])
def test_a_conflict_on_the_first_line_is_named(bom: str) -> None:
    """A conflict from the file's first line, after a byte order mark too (YAML skips
    it; the marker was missed, and YAML refused the file lines away)."""
    text = f"{bom}<<<<<<< HEAD\n{RULES}=======\n{RULES}>>>>>>> other\n"
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        "p.yaml:1:1: merge conflict marker '<<<<<<<': the file holds an unresolved conflict"]


def test_marker_look_alikes_in_values_load() -> None:
    text = RULES + ('    message: "<<<<<<< not at the start of a line"\ndescription: |\n'
                    "  =======\n  ======== and >>>>>>>>\n")
    assert check_policy_text("p.yaml", text) == []


def test_a_file_named_twice_is_one_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "inbound.yaml").write_text(RULES)
    (tmp_path / "link.yaml").symlink_to(policies / "inbound.yaml")
    code = main(["check", str(policies), str(policies / "inbound.yaml"),
                 str(tmp_path / "link.yaml")])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.startswith("ok: 1 policies, 1 rules (")


def test_a_name_repeated_by_a_file_with_other_problems_is_reported_with_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "inbound.yaml").write_text(RULES)
    (tmp_path / "outbound.yaml").write_text(
        RULES.replace('filename: ["*.exe"]', "size_over: lots"))  # this rule does not load
    code, err = check([tmp_path], capsys)
    first, second = tmp_path / "inbound.yaml", tmp_path / "outbound.yaml"
    assert (code, err.splitlines()) == (2, [
        f"{second}:2:7: policy name 'team-inbound' is also used at {first}:2:7",
        f"{second}:4:11: rule name 'block-exe' is also used at {first}:4:11",
        f"{second}:7:20: rule 'block-exe': when.attachment.size_over: expected a size in bytes "
        "such as "
        '1048576 or "1MB", got the string \'lots\'',
    ])


@pytest.mark.parametrize(("text", "found"), [
    (RULES.replace("    then: reject", "  then: reject"), "a key"),  # a rule key too far out
    (RULES.replace("    then: reject", "   then: reject"), "a key"),
    (RULES + "   - name: other\n", "a list"),
])
def test_a_misindented_line_is_named_in_words(text: str, found: str) -> None:
    """PyYAML says "expected <block end>, but found '?'": the author reads which line is
    out of its block, and what was found there."""
    [issue] = check_policy_text("inbound.yaml", text)
    assert issue.message == (f"YAML syntax error: expected the end of a block, but found "
                             f"{found} (check this line's indentation)")
    assert "<" not in issue.message and "'?'" not in issue.message


def test_a_byte_order_mark_changes_no_hash() -> None:
    """An editor on Windows may add one: the policy loads the same, so no new revision."""
    assert content_hash(["\ufeff" + RULES.replace("\n", "\r\n")]) == content_hash([RULES])
