"""Globs written as one text (filename: "*.exe, *.scr") were one glob that matches only a
name holding ", ": the rule never matched, silently. They load, as before, with a
warning at the glob (code list_in_glob)."""

from __future__ import annotations

import pytest

from postwarden_policies import evaluate_message, load_policy_set_from_sources
from postwarden_policies.errors import LIST_IN_GLOB
from postwarden_policies.facts import Envelope
from postwarden_policies.yamlnodes import PolicyIssue

HEAD = "version: 1\nname: p\nrules:\n  - name: r\n    then: reject\n    when:\n"
EXE = (b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
       b"Content-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/zip\r\n"
       b"Content-Disposition: attachment; filename=a.exe\r\n\r\nMZ\r\n--b--\r\n")


def _load(condition: str) -> tuple[list[PolicyIssue], tuple[str, ...]]:
    found: list[PolicyIssue] = []
    policies = load_policy_set_from_sources([("p.yaml", HEAD + condition)], warn=found.append)
    verdict = evaluate_message(policies, EXE, Envelope(helo="mx.example.test"))
    return found, verdict.rules


@pytest.mark.parametrize(("condition", "column", "told"), [
    pytest.param('      attachment: {filename: "*.exe, *.scr"}\n', 30,
                 "when.attachment.filename: glob '*.exe, *.scr' holds ',': several globs written "
                 "as one text match "
                 "only a name that holds it; write each as an item of a list, "
                 '["*.exe", "*.scr"] (or [,] for a comma in the name)', id="file-names"),
    pytest.param('      attachment: {content_type: "application/zip application/x-rar"}\n', 34,
                 "when.attachment.content_type: glob 'application/zip application/x-rar' holds ' "
                 "': several globs written "
                 "as one text match nothing (no host name or type holds it); write each as "
                 'an item of a list, ["application/zip", "application/x-rar"]', id="types"),
    pytest.param('      helo: ["mx.example.test,mx2.example.test"]\n', 14,
                 "glob 'mx.example.test,mx2.example.test' holds ',': several globs written "
                 "as one text match nothing (no host name or type holds it); write each as "
                 'an item of a list, ["mx.example.test", "mx2.example.test"]', id="host-names"),
])
def test_globs_written_as_one_text_are_a_warning(condition: str, column: int, told: str) -> None:
    warnings, matched = _load(condition)
    assert matched == ()  # what the warning tells
    [warning] = warnings
    assert (warning.line, warning.column, warning.code) == (7, column, LIST_IN_GLOB)
    assert warning.message == f"rule 'r': {told}"


@pytest.mark.parametrize("condition", [
    '      attachment: {filename: ["*.exe", "*.scr"]}\n',
    '      attachment: {filename: "my invoice [,] *.exe"}\n',  # a name's comma, bracketed
    '      attachment: {filename: "my file.exe"}\n',  # a blank is a file name's own
    '      helo: ["*.example.test"]\n',
])
def test_one_glob_a_list_or_a_bracketed_comma_gets_no_warning(condition: str) -> None:
    assert _load(condition)[0] == []


def test_the_list_the_warning_writes_loads_as_the_globs_meant() -> None:
    """The hint showed [*.exe, *.scr], which YAML reads as two aliases: an error."""
    [warning], _ = _load('      attachment: {filename: "*.exe, *.scr"}\n')
    written = warning.message[warning.message.index("["):warning.message.index("]") + 1]
    assert _load(f"      attachment: {{filename: {written}}}\n") == ([], ("r",))
