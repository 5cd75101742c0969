"""A sanitizer child runs the package it reads from disk, which after an upgrade in place
is not its parent's code. Such a child refuses to serve, and the message is deferred
with an ERROR saying to restart the milter, instead of being delivered with its HTML
replaced by a notice (the child had failed on a renamed handler) or cleaned by other
code than the policy's. Here the "disk" is a copy of the package that the children are
pointed at, and the parent is this process, running the package the tests import."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import postwarden_policies
from postwarden_policies import (
    Envelope,
    ReplaceBody,
    TempFail,
    Verdict,
    evaluate_message,
    load_policy_set_from_sources,
    sanitize,
    sanitizer_process,
)
from postwarden_policies.html_allowlist import HtmlOptions
from postwarden_policies.html_cost import BUDGET
from postwarden_policies.sanitize import sanitize_html
from postwarden_policies.sanitizer_process import (
    ISOLATE_CHARS,
    ChildFailed,
    SanitizerCodeChanged,
    SanitizerProcesses,
)
from tests.fixtures.processes import running

HANDLER = "postwarden_policies.sanitize:sanitized_part"  # the one sanitize starts
OPTIONS = HtmlOptions("keep", frozenset({"http", "https", "mailto", "cid"}))
COPIES = ISOLATE_CHARS // 10
LARGE_HTML = '<p onclick="x">a</p>' * COPIES  # twice ISOLATE_CHARS: cleaned in a child
POLICIES = load_policy_set_from_sources(
    [("p.yaml", "version: 1\nname: p\nsanitize:\n  html: true\n")])
ENVELOPE = Envelope(sender="a@example.com", recipients=("b@example.com",), queue_id="4QX1")
DEFERRED = "451 4.3.0 Temporary internal error, try again later"


def _rename_the_handler(package: Path) -> None:
    """The reviewer's case: the function the parent names is gone in the new version."""
    module = package / "sanitize.py"
    source = module.read_text()
    assert "def sanitized_part(" in source
    module.write_text(source.replace("sanitized_part", "sanitized_html_part"))


def _add_a_comment(package: Path) -> None:
    """Nothing the parent would see fail: a child would serve with other code."""
    module = package / "html_allowlist.py"
    module.write_text(module.read_text() + "# the next version\n")


Upgrade = Callable[[Path], None]
def _break_an_import(package: Path) -> None:
    """pip halfway through, or a dependency the new version needs missing: a child could
    not even import the package to look at its code."""
    module = package / "engine.py"
    module.write_text("import postwarden_module_not_installed\n" + module.read_text())


UPGRADES = [pytest.param(_rename_the_handler, id="handler-renamed"),
            pytest.param(_add_a_comment, id="comment-added"),
            pytest.param(_break_an_import, id="import-broken")]


@pytest.fixture
def on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the package, where this process's sanitizer children import it from."""
    package = tmp_path / "postwarden_policies"
    shutil.copytree(Path(postwarden_policies.__file__).parent, package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(sanitizer_process, "_SOURCE_ROOT", str(tmp_path))
    return package


@pytest.fixture
def children(on_disk: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SanitizerProcesses]:
    """sanitize's children, started afresh from the copy."""
    made: SanitizerProcesses = SanitizerProcesses(HANDLER, max_children=2)
    monkeypatch.setattr(sanitize, "_CHILDREN", made)
    yield made
    made.close()


def _evaluate(raw_html: bytes) -> Verdict:
    return evaluate_message(POLICIES, b"From: a@example.com\r\nSubject: s\r\n" + raw_html,
                            ENVELOPE)


def _single(html: str) -> bytes:
    return b"Content-Type: text/html\r\n\r\n" + html.encode()


def _two_parts(html: str) -> bytes:
    part = b"--b\r\nContent-Type: text/html\r\n\r\n" + html.encode() + b"\r\n"
    return (b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + part * 2 + b"--b--\r\n")


def _restart_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records
            if "restart the milter after an upgrade" in record.getMessage()]


@pytest.mark.parametrize("upgrade", UPGRADES)
def test_a_message_for_a_child_on_other_code_is_deferred(
    upgrade: Upgrade, on_disk: Path, children: SanitizerProcesses,
    caplog: pytest.LogCaptureFixture,
) -> None:
    upgrade(on_disk)
    with caplog.at_level(logging.WARNING):
        verdict = _evaluate(_single(LARGE_HTML))
    assert isinstance(verdict.decision, TempFail)
    assert str(verdict.decision.reply) == DEFERRED
    assert "internal_error" in verdict.flags
    assert not any(isinstance(edit, ReplaceBody) for edit in verdict.edits)
    [line] = _restart_lines(caplog)
    assert line.levelno == logging.ERROR and line.name == "postwarden_policies.engine"
    assert "4QX1" in line.getMessage()
    assert "is not the code this process runs" in line.getMessage()
    assert "replaced with a notice" not in caplog.text and "Traceback" not in caplog.text


def test_each_message_says_it_once(
    on_disk: Path, children: SanitizerProcesses, caplog: pytest.LogCaptureFixture,
) -> None:
    """A message with two large parts starts one child, and logs one line; the next
    message tries a child again (the files may be back), and logs its own."""
    _add_a_comment(on_disk)
    with caplog.at_level(logging.WARNING):
        first = _evaluate(_two_parts(LARGE_HTML))
        second = _evaluate(_single(LARGE_HTML))
    assert isinstance(first.decision, TempFail) and isinstance(second.decision, TempFail)
    assert len(_restart_lines(caplog)) == 2
    assert len(caplog.records) == 2


def test_the_refusal_is_told_from_a_crash(
    on_disk: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ChildFailed is the part's doing and becomes a notice; a refusal is no one part's.
    Here the files change after the parent looked at them, as the child starts: the
    child's own look refuses."""
    _rename_the_handler(on_disk)
    monkeypatch.setattr(sanitizer_process, "_on_disk", lambda: sanitizer_process.FINGERPRINT)
    processes: SanitizerProcesses = SanitizerProcesses(HANDLER, max_children=1)
    with pytest.raises(SanitizerCodeChanged, match="is not the code this process runs") as got:
        processes.run((LARGE_HTML, "keep", OPTIONS.allowed_url_schemes, BUDGET))
    assert not isinstance(got.value, ChildFailed)
    assert processes._idle == [] and processes._children == set()
    refused = int(str(got.value).split()[2])  # "sanitizer child PID refused ..."
    assert not running(refused)
    err = capfd.readouterr().err  # the child's: the journal has it under the milter's
    assert "restart the milter after an upgrade" in err and "AttributeError" not in err
    processes.close()


def test_the_same_code_elsewhere_is_served(children: SanitizerProcesses) -> None:
    """What is compared is the code, not where it lies: an unchanged copy cleans as the
    package always did."""
    assert sanitize_html(LARGE_HTML, OPTIONS) == ("<p>a</p>" * COPIES, (("@onclick", COPIES),))
    [child] = children._idle
    assert running(child.pid)
