"""Findings of a review of the policy language: reply codes and sizes in ASCII digits
only, whole-number floats where integers go, a JSON Schema that refuses what the loader
refuses, bounded glob-list errors, and the CLI on FIFOs, deep directory chains and file
names that are not UTF-8."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from postwarden_policies import load_policy_set, load_policy_set_from_sources, policy_schema
from postwarden_policies.cli import main
from postwarden_policies.errors import PolicyLoadError
from postwarden_policies.yamlnodes import read_plain

HEAD = "version: 1\nname: p\n"


def issues(text: str) -> list[str]:
    """The issues of one source ([] when it loads)."""
    try:
        load_policy_set_from_sources([("p.yaml", text)])
    except PolicyLoadError as exc:
        return [str(issue) for issue in exc.issues]
    return []


def schema_takes(text: str) -> bool:
    _, document, problems = read_plain("p.yaml", text)
    assert not problems
    return bool(jsonschema.Draft202012Validator(policy_schema()).is_valid(document))


# --- Digits of other scripts --------------------------------------------------------

@pytest.mark.parametrize("code", ["55\u0660", "550 5.\u0667.1", "\uff15\uff15\uff10"],
                         ids=["arabic-digit", "arabic-status", "fullwidth"])
def test_a_reply_code_in_other_digits_is_refused(code: str) -> None:
    # libmilter's smfi_setreply takes three ASCII digits; \d matched any script's.
    text = HEAD + f'rules: [{{name: r, then: reject, code: "{code}"}}]\n'
    assert any("expected an SMTP code" in issue for issue in issues(text))
    assert not schema_takes(text)


def test_a_size_in_other_digits_is_refused() -> None:
    text = HEAD + 'limits: {max_message_bytes: "1\u0660MB"}\n'
    assert any("expected a size" in issue for issue in issues(text))
    assert not schema_takes(text)


# --- Whole-number floats: integers, as JSON Schema's "integer" takes them -----------

@pytest.mark.parametrize("text", [
    HEAD + "priority: 1.0\n",
    "version: 1.0\nname: p\n",
    HEAD + "limits: {max_recipients: 1e3, max_message_bytes: 1e6}\n",
    HEAD + "rules: [{name: r, then: reject, code: 550.0}]\n",
], ids=["priority", "version", "limits", "code"])
def test_a_whole_number_float_loads_as_the_integer(text: str) -> None:
    assert issues(text) == []
    assert schema_takes(text)


def test_whole_number_floats_read_as_integers() -> None:
    policy = load_policy_set_from_sources([("p.yaml", HEAD + "priority: 2.0\nlimits: "
                                            "{max_recipients: 1e3}\nrules: [{name: r, then: "
                                            "reject, code: 551.0}]\n")]).policies[0]
    assert policy.priority == 2 and type(policy.priority) is int
    assert policy.limits.max_recipients == 1000
    assert policy.rules[0].reply is not None and policy.rules[0].reply.code == "551"


@pytest.mark.parametrize(("value", "word"), [("1.5", "expected an integer"),
                                             ("1e19", "integer too large")])
def test_a_float_that_is_no_integer_is_still_refused(value: str, word: str) -> None:
    assert any(word in issue for issue in issues(HEAD + f"priority: {value}\n"))


# --- The schema refuses what the loader refuses -------------------------------------

REFUSED_BY_BOTH = {
    "code-350": "rules: [{name: r, then: reject, code: 350}]",
    "code-299": "rules: [{name: r, then: reject, code: 299}]",
    "status-of-another-class": 'rules: [{name: r, then: reject, code: "550 4.7.1"}]',
    "size-string-too-large": "limits: {max_message_bytes: 99999999999G}",  # 11 digits
    "then-empty": "rules: [{name: r, then: {}}]",
    "when-empty": "rules: [{name: r, when: {}, then: accept}]",
    "limits-when-alone": "limits: {when: {authenticated: true}}",
    "limits-when-empty": "limits: {when: {}, max_recipients: 5}",
    "reject-with-edit": "rules: [{name: r, then: {action: reject, add_header: {X-A: b}}}]",
    "discard-stripping": "rules: [{name: r, then: {action: discard, strip_attachment: yes}}]",
    "code-with-accept": "rules: [{name: r, then: accept, code: 550}]",
    "code-with-an-edit-only": "rules: [{name: r, then: {subject_prefix: x}, code: 550}]",
    "message-with-accept": "rules: [{name: r, then: accept, message: hello}]",
    "reject-with-4xx": "rules: [{name: r, then: reject, code: 451}]",
    "tempfail-with-5xx": 'rules: [{name: r, then: {action: tempfail}, code: "550 5.7.1"}]',
}


@pytest.mark.parametrize("body", REFUSED_BY_BOTH.values(), ids=REFUSED_BY_BOTH.keys())
def test_the_schema_refuses_what_the_loader_refuses(body: str) -> None:
    text = HEAD + body + "\n"
    assert issues(text)
    assert not schema_takes(text)


TAKEN_BY_BOTH = {
    "reject-550": "rules: [{name: r, then: reject, code: 550}]",
    "tempfail-status": 'rules: [{name: r, then: {action: tempfail}, code: "451 4.7.1"}]',
    "quarantine-message": "rules: [{name: r, then: quarantine, message: held}]",
    "reject-not-stripping": "rules: [{name: r, then: {action: reject, strip_attachment: no}}]",
    "edits-alone": "rules: [{name: r, then: {add_header: {X-A: b}}}]",
    "limits-when": "limits: {when: {authenticated: true}, max_recipients: 5}",
    "size-largest-in-g": "limits: {max_message_bytes: 999999999G}",
    # Counts with as many digits as the largest one of their unit.
    "size-10-digits-g": "limits: {max_message_bytes: 1000000000G}",
    "size-19-digits": 'limits: {max_message_bytes: "1000000000000000000"}',
    "size-16-digits-k": "limits: {max_message_bytes: 1000000000000000k}",
}


@pytest.mark.parametrize("body", TAKEN_BY_BOTH.values(), ids=TAKEN_BY_BOTH.keys())
def test_the_schema_takes_what_the_loader_takes(body: str) -> None:
    text = HEAD + body + "\n"
    assert issues(text) == []
    assert schema_takes(text)


# --- A glob list RE2 cannot compile -------------------------------------------------

def test_a_glob_list_too_large_is_one_short_issue_saying_so() -> None:
    globs = ",".join(f"'*{i}*[a-z]*'" for i in range(20_000))
    text = HEAD + f"rules: [{{name: r, when: {{attachment: {{filename: [{globs}]}}}}, " \
                  "then: accept}]\n"
    [issue] = issues(text)
    assert len(issue) < 400
    assert "glob list '*0*[a-z]*, *1*[a-z]*" in issue
    assert "characters) is too large" in issue and "split it" in issue
    assert "invalid" not in issue


# --- The CLI and the loader on what the file system holds ---------------------------

def test_a_fifo_named_on_the_command_line_is_not_a_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    assert main(["check", str(fifo)]) == 2
    assert capsys.readouterr().err == f"{fifo}: not a file that can be read (a broken " \
        "symbolic link, a link loop, a FIFO?)\n"


@pytest.fixture
def deep_chain(tmp_path: Path) -> Iterator[Path]:
    """A policy directory with top/d/d/.../d/x.yaml 1100 levels down (each made relative
    to the one above: no path is long); removed with rm -r, as pytest's own cleanup
    recurses too."""
    (tmp_path / "a.yaml").write_text(HEAD)
    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(1100):
        os.mkdir("d", dir_fd=fd)
        fd, above = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(above)
    os.close(os.open("x.yaml", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)
    yield tmp_path
    subprocess.run(["rm", "-rf", str(tmp_path / "d")], check=True)


def test_a_deep_subdirectory_chain_is_a_warning(deep_chain: Path) -> None:
    # Python 3.11's os.walk recursed, and raised RecursionError here.
    warned: list[str] = []
    policy_set = load_policy_set([deep_chain], warn=lambda w: warned.append(str(w)))
    assert [p.name for p in policy_set.policies] == ["p"]
    [warning] = warned
    assert warning.startswith(f"{deep_chain / 'd'}: subdirectory not loaded: it holds d/d/")
    assert warning.endswith("/x.yaml, but a policy directory is read without its "
                            "subdirectories (name it too, or move the files up)")


def test_check_of_a_deep_subdirectory_chain(deep_chain: Path) -> None:
    assert main(["check", str(deep_chain)]) == 0


def test_test_prints_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    body = (HEAD + "rules: [{name: r, then: accept}]\ntests:\n"
            '  - {name: c, raw: "Subject: x\\n\\nx\\n", recipients: [a@b.c], expect: accept}\n')
    Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.yaml")).write_text(body)
    # PYTHONIOENCODING=utf-8 gives stdout the strict handler an en_US.UTF-8 locale gives.
    command = [sys.executable, "-m", "postwarden_policies.cli", "test", str(tmp_path)]
    environment = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    run = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == f"PASS {tmp_path}/caf\\udce9.yaml:5: c [rules: r]\n1 passed, 0 failed\n"


def test_main_in_process_leaves_stdout_as_it_found_it(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """It escapes what stdout cannot encode for its own run only."""
    before = sys.stdout.errors
    main(["check", str(Path(__file__).resolve().parents[2] / "policies" / "examples")])
    assert sys.stdout.errors == before
