"""postwarden-policy: exit codes and exactly what each command prints."""

from __future__ import annotations

import argparse
import io
import json
import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from postwarden_policies import load_policy_set
from postwarden_policies.cli import build_parser, main
from postwarden_policies.schema import schema_text
from tests.fixtures.forked import in_child

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"
SAMPLES = EXAMPLES / "samples"


def test_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLES)]) == 0
    digest = load_policy_set([EXAMPLES]).content_hash
    assert capsys.readouterr().out == f"ok: 2 policies, 9 rules ({digest[:12]})\n"


def test_check_reports_every_issue_sorted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nname: bad\nrules:\n  - name: r\n    when: {client_ip: [10.0.0.1/8]}\n"
        "    then: bounce\n"
    )
    assert main(["check", str(bad), str(tmp_path / "gone.yaml")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{bad}:5:24: rule 'r': invalid CIDR '10.0.0.1/8': 10.0.0.1/8 has host bits set",
        f"{bad}:6:11: rule 'r': then: expected one of accept, reject, tempfail, discard, "
        "quarantine, "
        "strip_attachment; got 'bounce'",
        f"{tmp_path / 'gone.yaml'}: no such file or directory",
    ]


def test_check_reports_a_number_too_large_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: Python's digit limit escaped as a ValueError traceback.
    huge = tmp_path / "huge.yaml"
    huge.write_text(
        'version: 1\nname: huge\nlimits:\n  max_attachment_bytes: "' + "9" * 5000 + 'MB"\n'
    )
    assert main(["check", str(huge)]) == 2
    assert capsys.readouterr().err == (
        f"{huge}:4:25: limits.max_attachment_bytes: size too large: at most 9223372036854775807 "
        "bytes, got the string "
        f"'{'9' * 80}'... (5002 characters)\n"
    )


def test_check_reports_names_repeated_across_files_at_their_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = "rules:\n  - name: shared\n    then: accept\n"
    (tmp_path / "a.yaml").write_text("version: 1\nname: one\n" + rule)
    (tmp_path / "b.yaml").write_text("version: 1\npriority: 5\nname: one\n" + rule)
    assert main(["check", str(tmp_path)]) == 2
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert capsys.readouterr().err.splitlines() == [
        f"{second}:3:7: policy name 'one' is also used at {first}:2:7",
        f"{second}:5:11: rule name 'shared' is also used at {first}:4:11",
    ]


def test_test_command_passes_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(EXAMPLES)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"PASS {EXAMPLES / 'outbound-submission.yaml'}:62: an authenticated user sends normally "
        "[rules: tag-submission]"
    )
    assert lines[-1] == "21 passed, 0 failed"


def test_test_command_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nname: p\nrules:\n  - name: r\n    then: reject\ntests:\n  - name: c\n"
        "    raw: 'Subject: x\n\n      body'\n    recipients: [a@b.test]\n    expect: accept\n"
    )
    assert main(["test", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"FAIL {path}:7: c [rules: r]",
        "    expected accept, got reject",
        "    message flags: malformed, missing_header_separator",
        "0 passed, 1 failed",
    ]


def test_test_command_with_no_tests_says_so_and_exits_5(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text("version: 1\nname: p\nrules:\n  - {name: r, then: accept}\n")
    assert main(["test", str(tmp_path)]) == 5
    assert capsys.readouterr().out == "no tests ran: no policy loaded has a tests: section\n"
    assert main(["check", str(tmp_path)]) == 0


def test_test_help_names_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["test", "--help"])
    assert "5 no tests ran" in capsys.readouterr().out


def test_test_command_with_load_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\n")
    assert main(["test", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}:1:1: missing required key 'name' in policy\n"


EVAL = [
    "eval",
    "--policy",
    str(EXAMPLES),
    "--from",
    "billing@supplier.test",
    "--to",
    "a@example.com",
]


def test_eval_prints_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*EVAL, str(SAMPLES / "exe-attachment.eml")]) == 0
    digest = load_policy_set([EXAMPLES]).content_hash
    assert capsys.readouterr().out.splitlines() == [
        "action: reject",
        "reply: 550 5.7.1 Executable attachments are not accepted",
        "rules: block-executables",
        f"policy: {digest}",
    ]


def test_eval_json_diff_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "delivered.eml"
    sample = SAMPLES / "macro-document.eml"
    assert main([*EVAL, "--json", "--output", str(out), str(sample)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["action"], data["smtp_reply"], data["rules"]) == (
        "accept",
        None,
        ["strip-macro-documents", "tag-external"],
    )
    assert [(c["type"], c["filename"], c["reason"]) for c in data["changes"]] == [
        ("attachment_stripped", "invoice.docm", "strip-macro-documents")
    ]
    delivered = out.read_bytes()
    assert b"Subject: [EXT] Invoice 2041\r\n" in delivered
    assert b'The attachment "invoice.docm"' in delivered
    assert main([*EVAL, "--diff", str(sample)]) == 0
    diff = capsys.readouterr().out
    assert "-Subject: Invoice 2041\n+Subject: [EXT] Invoice 2041\n" in diff.replace("\r", "")
    assert "+X-External: yes" in diff


def test_eval_json_with_diff_is_one_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    # The diff was printed after the document: `| jq` could not read the output.
    assert main([*EVAL, "--format", "json", "--diff", str(SAMPLES / "macro-document.eml")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["action"] == "accept"
    assert "-Subject: Invoice 2041\r\n+Subject: [EXT] Invoice 2041\r\n" in data["diff"]


def test_eval_does_not_write_a_rejected_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "delivered.eml"
    assert main([*EVAL, "--output", str(out), str(SAMPLES / "exe-attachment.eml")]) == 0
    assert not out.exists()
    assert capsys.readouterr().err == "not written: the message is not delivered (reject)\n"


@pytest.mark.parametrize("argv", [
    pytest.param(["check", ""], id="check"),
    pytest.param(["test", str(EXAMPLES), ""], id="test"),
    pytest.param(["eval", "--policy", "", "--from", "a@b.test", "--to", "c@d.test", "m.eml"],
                 id="eval-policy"),
    pytest.param([*EVAL, "--output", "", str(SAMPLES / "macro-document.eml")], id="eval-output"),
    pytest.param([*EVAL, ""], id="eval-message"),
])
def test_an_empty_path_is_refused(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # pathlib reads "" as ".": an unset "$POLICY_DIR" checked and passed the directory the
    # CI step ran in, and an unset --output "$OUT" wrote nothing, without a word.
    (tmp_path / "p.yaml").write_text("version: 1\nname: p\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as refused:
        main(argv)
    assert refused.value.code == 2
    assert capsys.readouterr().err.endswith(
        ": an empty path names no file (an unset variable?)\n")


@pytest.mark.parametrize("expected", ["exe-attachment.eml", "macro-document.eml"])
def test_eval_refuses_an_output_that_is_its_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], expected: str
) -> None:
    # Before: a rejected message's file was removed as "one left from an earlier run",
    # a delivered one overwritten with what the filter made of it.
    sample = tmp_path / expected
    sample.write_bytes((SAMPLES / expected).read_bytes())
    (tmp_path / "link.eml").symlink_to(sample)
    with pytest.raises(SystemExit) as refused:
        main([*EVAL, "--output", str(tmp_path / "link.eml"), str(sample)])
    assert refused.value.code == 2
    assert sample.read_bytes() == (SAMPLES / expected).read_bytes()
    assert capsys.readouterr().err.endswith(
        "error: --output names the message file itself: it would be overwritten, "
        "or removed for a message not delivered\n")


@pytest.mark.parametrize(("option", "value", "problem"), [
    pytest.param("--client-ip", "bogus", "expected an IPv4 or IPv6 address, got 'bogus'",
                 id="ip-text"),
    pytest.param("--client-ip", "10.0.0.0/8", "expected an IPv4 or IPv6 address, got '10.0.0.0/8'",
                 id="ip-network"),
    pytest.param("--client-ip", "192.0.2.256",
                 "expected an IPv4 or IPv6 address, got '192.0.2.256'", id="ip-out-of-range"),
    pytest.param("--from", "billing", "expected an address such as user@example.com, got 'billing'",
                 id="sender-without-domain"),
    pytest.param("--to", "a@b@c", "expected an address such as user@example.com, got 'a@b@c'",
                 id="recipient-two-ats"),
    pytest.param("--to", "<a@b.test>", "expected an address such as user@example.com, got "
                 "'<a@b.test>' (the address alone, without angle brackets: 'a@b.test')",
                 id="recipient-in-angle-brackets"),
])
def test_eval_refuses_malformed_envelope_options(
    option: str, value: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        main([*EVAL, option, value, str(SAMPLES / "internal-plain.eml")])
    assert raised.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"postwarden-policy eval: error: argument {option}: {problem}"
    )


@pytest.mark.parametrize("address", ["192.0.2.7", "2001:db8::7", "[2001:db8::7]",
                                     "IPv6:2001:db8::7", "::ffff:192.0.2.7"])
def test_eval_takes_a_client_ip_in_every_form_the_milter_reads(
    address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*EVAL, "--client-ip", address, str(SAMPLES / "internal-plain.eml")]) == 0
    assert capsys.readouterr().out.startswith("action: accept\n")


def test_eval_reads_an_empty_auth_user_as_the_milter_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Postfix's {auth_authen} is empty for a client that did not authenticate, and the
    # milter reads that as not authenticated: --auth-user "$USER" with USER unset must
    # not pass our domain's sender from outside as a logged-in user.
    assert main(["eval", "--policy", str(EXAMPLES), "--from", "dave@example.com",
                 "--to", "customer@elsewhere.test", "--client-ip", "192.0.2.10",
                 "--auth-user", "", str(SAMPLES / "outbound-plain.eml")]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        "action: reject", "reply: 550 5.7.1 Authenticate to send as example.com"]


def test_eval_unreadable_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*EVAL, str(tmp_path / "none.eml")]) == 1
    assert (
        capsys.readouterr().err
        == f"{tmp_path / 'none.eml'}: cannot read: No such file or directory\n"
    )


def test_eval_against_policies_that_do_not_load_exits_2_as_check_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.yaml").write_text("name: broken\nrules: [\n")
    assert main(["eval", "--policy", str(tmp_path), "--from", "a@elsewhere.test",
                 "--to", "b@example.com", str(SAMPLES / "internal-plain.eml")]) == 2
    assert main(["check", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count(f"{tmp_path / 'broken.yaml'}:") == 2


def test_schema_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == schema_text()


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["eval", "message.eml"])
    assert raised.value.code == 2
    assert "the following arguments are required: --policy, --from, --to" in capsys.readouterr().err


def test_console_script_runs_from_stdin(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("postwarden-policy")
    result = subprocess.run(
        [
            str(script),
            "eval",
            "--policy",
            str(EXAMPLES),
            "--from",
            "<>",
            "--to",
            "a@example.com",
            "--json",
            "-",
        ],
        input=(SAMPLES / "internal-plain.eml").read_bytes(),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rules"] == ["tag-external"]


@pytest.mark.parametrize(("content_type", "changed"), [
    ("text/html", "sanitized the message body: removed script x1 (29 -> "),
    ("application/pdf; name=scan.pdf", "stripped the message body 'scan.pdf' (29 bytes, "),
])
def test_eval_names_the_body_of_a_message_of_one_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content_type: str, changed: str
) -> None:
    """Its MIME path is "": eval printed 'sanitized part : removed ...'."""
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nname: p\nsanitize: {html: true}\nrules:\n"
                      "  - {name: strip, when: {attachment: {}}, then: strip_attachment}\n")
    message = tmp_path / "m.eml"
    message.write_text(f"Subject: x\nContent-Type: {content_type}\n\n"
                       "hi<script>alert(1)</script>\n")
    assert main(["eval", "--policy", str(policy), "--from", "<>", "--to", "a@b.test",
                 str(message)]) == 0
    assert f"change: {changed}" in capsys.readouterr().out


@pytest.mark.parametrize(("path", "code", "told"), [
    (EXAMPLES, 0, b"ok: 2 policies"), (EXAMPLES / "missing.yaml", 2, b"no such file")])
def test_python_m_runs_the_command_with_its_exit_code(path: Path, code: int, told: bytes) -> None:
    """`python -m postwarden_policies check DIR`, as a CI job without the console script
    runs it, was "'postwarden_policies' is a package and cannot be directly executed"."""
    result = subprocess.run([sys.executable, "-m", "postwarden_policies", "check", str(path)],
                            capture_output=True, check=False, timeout=60)
    assert result.returncode == code, result.stderr
    assert told in result.stdout + result.stderr


def test_eval_takes_format_json_as_check_and_test_do_and_json_as_its_alias(
    capsys: pytest.CaptureFixture[str]
) -> None:
    # eval alone took --json; --format json, as check and test take it, was a usage error.
    sample = str(SAMPLES / "exe-attachment.eml")
    assert main([*EVAL, "--format", "json", sample]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["action"] == "reject"
    assert main([*EVAL, "--json", sample]) == 0
    assert json.loads(capsys.readouterr().out) == document
    assert main([*EVAL, "--json", "--format", "text", sample]) == 0  # the last one given
    assert capsys.readouterr().out.startswith("action: reject\n")
    helps = _helps("eval")
    assert helps["--format"] == _helps("check")["--format"]
    assert "--format json" in str(helps["--json"])


def _helps(command: str) -> dict[str, str | None]:
    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    return {option: action.help for action in commands.choices[command]._actions
            for option in action.option_strings}


def test_help_reads_as_plain_text_and_describes_every_eval_option(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text  # reStructuredText from a docstring is no help text
    assert "without a database or Postfix" in text
    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    unexplained = [option for action in commands.choices["eval"]._actions
                   if not action.help for option in action.option_strings]
    assert unexplained == []


def test_eval_shows_a_header_edit_on_one_line_with_controls_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # The prefixed Subject keeps its folding, and it is the sender's text: printed as
    # it is, it would break the line and send the terminal its escapes.
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: <a@elsewhere.test>\r\nTo: <a@example.com>\r\n"
                        b"Subject: a folded\r\n subject \x1b[2Jhere\r\n\r\nhi\r\n")
    assert main([*EVAL, str(message)]) == 0
    edits = [line for line in capsys.readouterr().out.splitlines() if line.startswith("edit:")]
    assert "edit: change header Subject[1]: [EXT] a folded subject \\x1b[2Jhere" in edits


def test_check_names_a_directory_it_may_not_list_and_reads_the_rest() -> None:
    # It was a PermissionError traceback, then the one problem told: the paths after it
    # went unread. Run as nobody, in a child (the suite runs as root, whom no mode
    # stops), on a directory nobody may enter but not list.
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o711)  # noqa: S103 - nobody must enter it
        locked = Path(top) / "locked"
        locked.mkdir(mode=0o711)

        def check_as_nobody() -> int:
            nobody = pwd.getpwnam("nobody")
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            sys.stderr = told = io.StringIO()
            code = main(["check", str(locked), f"{top}/gone.yaml"])
            return 0 if (code, told.getvalue()) == (
                2, f"{top}/gone.yaml: no such file or directory\n"
                   f"{locked}: cannot read: Permission denied\n") else 1

        assert in_child(check_as_nobody) == 0


def test_a_reader_that_left_gets_no_traceback() -> None:
    """`postwarden-policy schema | head -1`, head gone before the schema is written."""
    script = Path(sys.executable).with_name("postwarden-policy")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([str(script), "schema"], stdout=write_end,
                                stderr=subprocess.PIPE, check=False, timeout=60)
    finally:
        os.close(write_end)
    assert result.returncode == 141  # as a shell reports SIGPIPE's end: no test failed
    assert result.stderr == b""


def test_a_reader_that_left_does_not_hide_a_failing_case(tmp_path: Path) -> None:
    """`postwarden-policy test ... | head`: a failure keeps its code (1), not 141, which a
    script may take as harmless."""
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nname: p\nrules:\n  - name: r\n    then: reject\ntests:\n  - name: c\n"
        "    raw: 'Subject: x\n\n      body'\n    recipients: [a@b.test]\n    expect: accept\n"
    )
    script = Path(sys.executable).with_name("postwarden-policy")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([str(script), "test", str(path)], stdout=write_end,
                                stderr=subprocess.PIPE, check=False, timeout=60)
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert result.stderr == b""


def test_a_reader_that_left_does_not_hide_an_output_eval_could_not_write(
    tmp_path: Path,
) -> None:
    script = Path(sys.executable).with_name("postwarden-policy")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [str(script), "eval", "--policy", str(EXAMPLES), "--from", "a@elsewhere.test",
             "--to", "b@example.com", "--output", str(tmp_path / "none" / "out.eml"),
             str(SAMPLES / "internal-plain.eml")],
            stdout=write_end, stderr=subprocess.PIPE, check=False, timeout=60)
    finally:
        os.close(write_end)
    assert result.returncode == 74  # EX_IOERR, as for standard output (1: a failed case)
    assert b"cannot write" in result.stderr


@pytest.mark.parametrize("stdout", ["full", "closed"])
def test_an_output_that_cannot_be_written_is_told_not_taken_for_a_failed_case(
    stdout: str,
) -> None:
    """`test ... > /dev/full` or with stdout closed: 74 and one line, not a traceback and
    1, which says a case failed."""
    script = Path(sys.executable).with_name("postwarden-policy")
    command = [str(script), "test", "--format", "json", str(EXAMPLES)]
    if stdout == "full":
        with open("/dev/full", "wb") as full:
            result = subprocess.run(command, stdout=full, stderr=subprocess.PIPE,
                                    check=False, timeout=60)
    else:
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                check=False, timeout=60, preexec_fn=lambda: os.close(1))
    assert result.returncode == 74, result.stderr
    assert result.stderr.startswith(b"postwarden-policy: cannot write the output: ")
    assert b"Traceback" not in result.stderr


def test_eval_of_standard_input_started_with_it_closed_says_so() -> None:
    # Before: an AttributeError traceback (Python sets sys.stdin to None).
    script = Path(sys.executable).with_name("postwarden-policy")
    result = subprocess.run(
        [str(script), "eval", "--policy", str(EXAMPLES), "--from", "a@elsewhere.test",
         "--to", "b@example.com", "-"],
        stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=60,
        preexec_fn=lambda: os.close(0))
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr == b"-: cannot read: standard input is closed\n"


def test_eval_writes_its_output_file_before_a_reader_that_left_ends_it(tmp_path: Path) -> None:
    output = tmp_path / "out.eml"
    output.write_bytes(b"an earlier run's message")
    script = Path(sys.executable).with_name("postwarden-policy")
    read_end, write_end = os.pipe()
    os.close(read_end)  # `eval ... --output out.eml m.eml | head -1`, head gone
    try:
        result = subprocess.run(
            [str(script), "eval", "--policy", str(EXAMPLES), "--from", "a@elsewhere.test",
             "--to", "b@example.com", "--output", str(output),
             str(SAMPLES / "internal-plain.eml")],
            stdout=write_end, stderr=subprocess.PIPE, check=False, timeout=60)
    finally:
        os.close(write_end)
    assert result.returncode == 141 and result.stderr == b""
    assert output.read_bytes() != b"an earlier run's message"


def test_a_file_name_with_a_line_break_shows_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # Git takes such a name: printed as it is, it forged a passing case's (or a clean
    # file's) line of its own for a CI reading the output.
    failing = tmp_path / "w\nPASS fake.yaml"
    failing.write_text(
        "version: 1\nname: w\ntests:\n  - name: t\n    raw: 'Subject: x\n\n      body'\n"
        "    recipients: [a@b.test]\n    expect: reject\n")
    assert main(["test", str(failing)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        f"FAIL {tmp_path}/w\\nPASS fake.yaml:4: t [rules: (none)]")
    broken = tmp_path / "b\nok.yaml"
    broken.write_text("version: 1\n")
    assert main(["check", str(broken)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path}/b\\nok.yaml:1:1: missing required key 'name' in policy"]


def test_a_case_name_shows_on_its_report_line_with_controls_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # Printed as it is, the line break would forge a passing case's line of its own.
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nname: p\nrules:\n  - name: r\n    then: reject\ntests:\n"
        "  - name: \"naïve\\nPASS q.yaml:1: fine\\e[2J\"\n"
        "    raw: 'Subject: x\n\n      body'\n    recipients: [a@b.test]\n    expect: accept\n"
    )
    assert main(["test", str(path)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        f"FAIL {path}:7: naïve\\nPASS q.yaml:1: fine\\x1b[2J [rules: r]")


def test_check_names_a_path_it_cannot_examine_and_reads_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name longer than a file system takes (a path built from variables) stopped check
    as root too: it was told, and nothing after it was read."""
    long = tmp_path / ("x" * 300 + ".yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: bad\nrules:\n  - name: r\n    then: bounce\n")
    assert main(["check", str(long), str(bad)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{bad}:5:11: rule 'r': then: expected one of accept, reject, tempfail, discard, "
        "quarantine, strip_attachment; got 'bounce'",
        f"{long}: cannot read: File name too long"]
