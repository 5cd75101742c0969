"""Loading policy sources: every issue with its exact line, column and message."""

# The table keeps each source and each exact message on one line, whatever its length.
# ruff: noqa: E501

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from postwarden_policies import (
    Envelope,
    PolicyIssue,
    PolicyLoadError,
    check_policy_text,
    evaluate_message,
    load_policy_set,
)
from postwarden_policies.loader import NOT_A_FILE, load_policy_set_from_sources
from postwarden_policies.model import Mode, StructureAction
from postwarden_policies.patterns import MAX_SET_PROGRAM_SIZE, compile_regex
from postwarden_policies.verdicts import Action, SmtpReply
from postwarden_policies.yamlnodes import MAX_INTEGER, MAX_NESTING, MAX_NODES, MAX_SOURCE_CHARS

from .policy_helpers import policy

H = "version: 1\nname: t\n"


def issues(text: str) -> list[str]:
    return [
        f"{i.line}:{i.column}: {i.message}" if i.line else f"-: {i.message}"
        for i in check_policy_text("t.yaml", text)
    ]


ERRORS = [
    pytest.param(
        H + "rulez: []\n",
        [
            "3:1: unknown key 'rulez' in policy (did you mean 'rules'?); expected one of: version, name, description, mode, priority, limits, sanitize, tag_flags, rules, tests, or x-... (ignored)"
        ],
        id="unknown-top-key",
    ),
    pytest.param(
        "rules: []\n",
        [
            "1:1: missing required key 'version' in policy",
            "1:1: missing required key 'name' in policy",
        ],
        id="missing-version-name",
    ),
    pytest.param(
        H + "priority: high\n",
        ["3:11: priority: expected an integer, got the string 'high'"],
        id="priority-type",
    ),
    pytest.param(
        H + "mode: enforced\n",
        ["3:7: mode: expected one of enforce, report; got 'enforced' (did you mean 'enforce'?)"],
        id="mode-enum",
    ),
    pytest.param(
        H + "rules: {name: r}\n",
        ["3:8: expected a list, got a mapping"
         " (each item of the list starts with '- ' before its first key; in flow style, "
         "[{...}, {...}])"],
        id="rules-not-list",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    when: {has_html: true}\n",
        ["4:5: rule 'r': missing required key 'then' in rule"],
        id="rule-missing-then",
    ),
    pytest.param(
        H
        + "rules:\n  - name: r\n    when: {client_ip: [10.0.0.0/8, 10.0.0.1/8]}\n    then: accept\n",
        ["5:36: rule 'r': invalid CIDR '10.0.0.1/8': 10.0.0.1/8 has host bits set"],
        id="bad-cidr",
    ),
    pytest.param(
        H + "rules:\n  - name: spam\n    when:\n      subject: '(?<=x)y'\n    then: accept\n",
        [
            "6:16: rule 'spam': when.subject: invalid RE2 regular expression '(?<=x)y': invalid perl operator: (?<="
            " (RE2 has no lookahead or lookbehind: match the text around, or put a second "
            "condition under not:)"
        ],
        id="bad-regex",
    ),
    pytest.param(
        H
        + "rules:\n  - name: r\n    when:\n      attachment: {filename: ['*.exe', '[abc']}\n    then: accept\n",
        ["6:40: rule 'r': invalid glob '[abc': '[' without a closing ']'"],
        id="bad-glob",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    then: bounce\n",
        [
            "5:11: rule 'r': then: expected one of accept, reject, tempfail, discard, quarantine, strip_attachment; got 'bounce'"
        ],
        id="unknown-action",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    then: accept\n    code: 550\n",
        ["6:11: rule 'r': code is only allowed with reject or tempfail"],
        id="code-with-accept",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    then: reject\n    code: 451\n",
        ["6:11: rule 'r': reject needs a 5xx code, got 451"],
        id="reject-4xx",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    then: reject\n    code: '550 4.7.1'\n",
        ["6:11: rule 'r': code: enhanced status 4.7.1 does not match the class of 550"],
        id="status-class",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    then: reject\n    code: 'five fifty'\n",
        ["6:11: rule 'r': code: expected an SMTP code such as 550 or \"550 5.7.1\", got the string 'five fifty'"],
        id="bad-code",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    then: strip_attachment\n    message: hi\n",
        ["6:14: rule 'r': message is only allowed with reject, tempfail or quarantine"],
        id="message-with-strip",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    then: accept\n    then: reject\n",
        ["6:5: rule 'r': duplicate key 'then' (first defined at line 5)"],
        id="duplicate-key",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    then: accept\n  - name: r\n    then: reject\n",
        ["6:11: duplicate rule name 'r' (first at line 4)"],
        id="duplicate-rule",
    ),
    pytest.param(
        H + "rules: [\n",
        ["4:1: YAML syntax error: expected the node content, but found '<stream end>'"],
        id="yaml-syntax",
    ),
    pytest.param(
        "",
        ["-: empty document: expected a policy mapping"],
        id="empty",
    ),
    pytest.param(
        "- a\n",
        ["1:1: expected a mapping (policy), got a sequence"],
        id="top-list",
    ),
    pytest.param(
        H + 'rules:\n  - name: r\n    then:\n      add_header: {X-A: "x\\r\\nBcc: evil@x.test"}\n',
        ["6:25: rule 'r': expected one line of printable ASCII, got 'x\\r\\nBcc: evil@x.test'"],
        id="header-injection",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    then:\n      add_header: {'X:A': b}\n",
        ["6:20: rule 'r': expected a header name, got 'X:A'"],
        id="header-name-colon",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    then:\n      remove_header: [X-A, content-type]\n",
        ["6:28: rule 'r': content-type cannot be removed: it defines how the body is read"],
        id="remove-content-type",
    ),
    pytest.param(
        H + "sanitize: {html: true, allowed_url_schemes: [https, JavaScript]}\n",
        ["3:53: URL scheme javascript can never be allowed"],
        id="javascript-scheme",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    when: {sender: [true]}\n    then: accept\n",
        ["5:21: rule 'r': expected a string, got a boolean (quote it to make it a string)"],
        id="bool-for-string",
    ),
    pytest.param(
        "version: 2\nname: t\n",
        ["1:10: version: unsupported version 2; this postwarden reads version 1"],
        id="version-2",
    ),
    pytest.param(
        "version: '1'\nname: t\n",
        ["1:10: version: expected the format version 1, got the string '1' (quoted, it is text: "
         "write 1 without quotes)"],
        id="version-string",
    ),
    pytest.param(
        H + "limits: {max_message_bytes: 10 parsecs}\n",
        ['3:29: limits.max_message_bytes: expected a size in bytes such as 1048576 or "1MB", got the string '
         "'10 parsecs'"],
        id="size-bad",
    ),
    pytest.param(  # "got an integer" said nothing of what is wrong with it
        H + "limits: {max_attachment_bytes: -1}\n",
        ['3:32: limits.max_attachment_bytes: expected a size in bytes such as 1048576 or "1MB", got -1'],
        id="size-negative",
    ),
    pytest.param(  # "got a number", "got an integer": it is one, and said nothing more
        H + "priority: 1.5\nsanitize: {html: 1}\nrules:\n  - {name: r, then: reject, code: 600}\n",
        ["3:11: priority: expected an integer, got 1.5", "4:18: sanitize.html: expected true or false, got 1",
         "6:35: rule 'r': code: expected an SMTP code such as 550 or \"550 5.7.1\", got 600"],
        id="number-as-written",
    ),
    pytest.param(
        H + "description: !!python/object/apply:os.system [id]\n",
        ["3:14: expected a string, got a value tagged !!python/object/apply:os.system"],
        id="python-tag",
    ),
    pytest.param(
        H + "---\n" + H,
        [
            "3:1: YAML syntax error: expected a single document in the stream, but found another document (a file holds one YAML document: remove this --- line, or move what follows it into a file of its own)"
        ],
        id="two-documents",
    ),
    pytest.param(
        "---\n" + H + "---\n",
        [
            "4:1: YAML syntax error: expected a single document in the stream, but found another document (a file holds one YAML document: remove this --- line, or move what follows it into a file of its own)"
        ],
        id="a-document-marker-after-the-policy",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    then: {action: strip_attachment}\n",
        ["5:20: rule 'r': then.action: expected one of accept, reject, tempfail, discard, quarantine; got 'strip_attachment' (strip_attachment is an edit, not a terminal action: write strip_attachment: true in then)"],
        id="strip-attachment-as-action",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    then: {}\n",
        ["5:11: rule 'r': expected at least one action in then"],
        id="empty-then",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    then: {action: reject, strip_attachment: maybe}\n",
        ["5:46: rule 'r': then.strip_attachment: expected true or false, got the string 'maybe'"],
        id="two-terminals-string-and-map",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    when: {any: {sender: a@b.test}}\n    then: accept\n",
        ["5:17: rule 'r': expected a list, got a mapping"
         " (each item of the list starts with '- ' before its first key; in flow style, "
         "[{...}, {...}])"],
        id="any-not-list",
    ),
    pytest.param(
        H
        + "rules:\n  - name: r\n    when:\n      not:\n        any:\n          - header: {X-A: '('}\n    then: accept\n",
        ["8:27: rule 'r': invalid RE2 regular expression '(': missing ): ("],
        id="nested-error",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    when: {recipient: [bob]}\n    then: accept\n",
        ["5:24: rule 'r': expected an e-mail address, got 'bob'"],
        id="bad-address",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    when: {sender_domain: ['exa mple.com']}\n    then: accept\n",
        [
            "5:28: rule 'r': expected a domain such as example.com or .example.com, got 'exa mple.com'"
        ],
        id="bad-domain",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    when: {sender: ['*@evil.test']}\n    then: accept\n",
        ["5:21: rule 'r': '*@evil.test' is a glob, but address lists hold whole addresses: use sender_domain for every address at a domain (here 'evil.test')"],
        id="address-glob-sender",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    when: {from: ['*@*.example.com']}\n    then: accept\n",
        ["5:19: rule 'r': '*@*.example.com' is a glob, but address lists hold whole addresses: use from_domain for every address at a domain (here '*.example.com')"],
        id="address-glob-from",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    when: {recipient: ['bo?@example.com']}\n    then: accept\n",
        ["5:24: rule 'r': 'bo?@example.com' is a glob, but address lists hold whole addresses: use recipient_domain for every address at a domain (here 'example.com')"],
        id="address-glob-recipient",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    when: {sender_domain: ['bü_d.example']}\n    then: accept\n",
        ["5:28: rule 'r': invalid internationalised domain name 'bü_d.example': Codepoint U+005F at position 3 of 'bü_d' not allowed"],
        id="bad-idn-domain",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    when: {recipient: ['a@bü_d.example']}\n    then: accept\n",
        ["5:24: rule 'r': invalid internationalised domain name 'bü_d.example': Codepoint U+005F at position 3 of 'bü_d' not allowed"],
        id="bad-idn-address",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    when: {client_ip: ['::ffff:192.0.2.0/95']}\n    then: accept\n",
        ["5:24: rule 'r': invalid CIDR '::ffff:192.0.2.0/95': an IPv4-mapped range needs /96 or longer (::ffff:a.b.c.d/96+n is a.b.c.d/n)"],
        id="mapped-prefix-too-short",
    ),
    pytest.param(
        H + "tests:\n  - name: c\n    raw: x\n    recipients: [a@b.test]\n    expect: accept\n    expect_headers: {Subject: \"a\\u2028b\", X-A: \"a\\nb\"}\n",
        [
            "8:31: test 'c': expected a header value on one line, got 'a\\u2028b'",
            "8:48: test 'c': expected a header value on one line, got 'a\\nb'",
        ],
        id="expect-headers-one-line",
    ),
    pytest.param(
        H + "rules:\n  - name: 'has space'\n    then: accept\n",
        ["4:11: rule 'has space': name: expected a rule name (letters, digits, . _ -), got 'has space'"],
        id="bad-rule-name",
    ),
    pytest.param(
        H
        + "tests:\n  - name: c\n    raw: 'x'\n    message: a.eml\n    recipients: [a@b.test]\n    expect: accept\n",
        ["4:5: test 'c': give exactly one of message (a file) or raw (the message inline)"],
        id="test-message-and-raw",
    ),
    pytest.param(
        H
        + "rules:\n  - name: r\n    then: accept\ntests:\n  - name: c\n    raw: \"Subject: x\\n\\nhi\\n\"\n    recipients: [a@b.test]\n    expect: accept\n    expect_rules: [r, report:r, limit:max_recipients, s]\n",
        ["11:23: test 'c': 'report:r' in expect_rules: verdicts of this enforce-mode policy "
         "name the rule 'r'",
         "11:55: test 'c': unknown rule 's' in expect_rules"],
        id="test-unknown-rule",
    ),
    pytest.param(
        H + "tests:\n  - name: c\n    raw: x\n    recipients: [a@b.test]\n    expect: deliver\n",
        [
            "7:13: test 'c': expect: expected one of accept, reject, tempfail, discard, quarantine; got 'deliver'"
        ],
        id="test-bad-expect",
    ),
    pytest.param(
        H + "tests:\n  - name: c\n    raw: x\n    expect: accept\n",
        ["4:5: test 'c': missing required key 'recipients' in test"],
        id="test-missing-recipients",
    ),
    pytest.param(
        "version: 1\nname: t\nmode: x\npriority: -1\nrules:\n  - name: a\n    then: nope\n  - name: b\n    when: {size_over: big}\n    then: accept\n",
        [
            "3:7: mode: expected one of enforce, report; got 'x'",
            "4:11: priority: expected an integer of at least 0, got -1",
            "7:11: rule 'a': then: expected one of accept, reject, tempfail, discard, quarantine, strip_attachment; got 'nope'",
            "9:23: rule 'b': when.size_over: expected a size in bytes such as 1048576 or \"1MB\", got the string 'big'",
        ],
        id="many-errors",
    ),
    pytest.param(
        H + "rules:\n  - name: r\n    when: {1: x}\n    then: accept\n",
        ["5:12: rule 'r': expected a string key, got an integer"],
        id="key-not-string",
    ),
    pytest.param(
        H + "limits: {on_structure_limit: bounce}\n",
        ["3:30: limits.on_structure_limit: expected one of reject, quarantine; got 'bounce'"],
        id="on-structure-limit",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ERRORS)
def test_load_errors(text: str, expected: list[str]) -> None:
    assert issues(text) == expected


def test_alias_expansion_is_bounded() -> None:
    rules = "rules:\n  - name: r0\n    when: &l0 {has_html: true}\n    then: accept\n"
    for level in range(1, 8):
        aliases = ", ".join([f"*l{level - 1}"] * 10)
        rules += f"  - name: r{level}\n    when: &l{level} {{any: [{aliases}]}}\n    then: accept\n"
    found = issues(H + rules)  # at a value read again: an alias in r1's list
    assert found == [f"8:32: rule 'r5': document too large: aliases repeat more than "
                     f"{MAX_NODES} values (an alias bomb?)"]


def test_a_document_of_more_values_than_aliases_may_repeat_loads() -> None:
    """A long list written out (a generated blocklist kept in Git, the Rules API's rules)
    is bounded by the file's size: only values aliases repeat count towards MAX_NODES."""
    senders = "".join(f"      - u{i}@spam.test\n" for i in range(MAX_NODES))
    rules = ("rules:\n  - name: blocklist\n    when:\n      sender:\n" + senders
             + "    then: reject\n  - name: one\n    when: {sender: x@spam.test}\n"
             "    then: reject\n")
    assert issues(H + rules) == []


def test_all_issues_are_collected_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(H.replace("t", "a") + "mode: loud\n")
    (tmp_path / "b.yml").write_text("version: 1\nname: b\npriority: x\n")
    (tmp_path / "notes.txt").write_text("not a policy")
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set([tmp_path])
    assert [str(i) for i in raised.value.issues] == [
        f"{tmp_path / 'a.yaml'}:3:7: mode: expected one of enforce, report; got 'loud'",
        f"{tmp_path / 'b.yml'}:3:11: priority: expected an integer, got the string 'x'",
    ]
    assert str(raised.value) == (
        f"policy did not load: {tmp_path / 'a.yaml'}:3:7: mode: expected one of enforce, report; "
        "got 'loud' (and 1 more)"
    )


def test_paths_that_name_no_policy(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set([tmp_path, tmp_path / "missing.yaml"])
    assert raised.value.issues == (
        PolicyIssue(str(tmp_path), None, None, "no *.yaml or *.yml policy files"),
        PolicyIssue(str(tmp_path / "missing.yaml"), None, None, "no such file or directory"),
    )


def test_a_policy_file_suffix_in_capitals_is_read(tmp_path: Path) -> None:
    (tmp_path / "A.YAML").write_text(H, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a policy", encoding="utf-8")
    assert [p.name for p in load_policy_set([tmp_path]).policies] == ["t"]


def test_hidden_files_in_a_directory_are_not_policies(tmp_path: Path) -> None:
    # A tool's temporary copy, half written, would be loaded (and refused) meanwhile.
    (tmp_path / "a.yaml").write_text(H, encoding="utf-8")
    (tmp_path / ".ansible_tmp1234main.yaml").write_text("version: 1\nname: [", encoding="utf-8")
    assert [p.name for p in load_policy_set([tmp_path]).policies] == ["t"]


def test_unreadable_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set([path])
    assert [str(i) for i in raised.value.issues] == [
        f"{path}:2:10: cannot read: byte 0xe9 is not UTF-8 text"]


def test_a_byte_past_the_first_buffer_that_is_not_utf8_is_placed(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    comments = "".join(f"# line {n} caf\u00e9\n" for n in range(1, 2001)).encode()
    path.write_bytes(comments + b"version: 1\nname: caf\xe9\n")
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set([path])
    assert [str(i) for i in raised.value.issues] == [
        f"{path}:2002:10: cannot read: byte 0xe9 is not UTF-8 text"]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_a_file_saved_as_utf16_or_utf32_is_told_so(tmp_path: Path, encoding: str) -> None:
    # What Windows PowerShell's `>` and Notepad's "Unicode" write: "byte 0xff is not
    # UTF-8 text" left its author to guess.
    path = tmp_path / "wide.yaml"
    path.write_bytes(("\ufeff" + H).encode(encoding))
    named = encoding[:6].upper()
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set([path])
    assert [str(i) for i in raised.value.issues] == [
        f"{path}:1:1: cannot read: {named} text (it starts with a {named} byte order "
        "mark): save it as UTF-8"]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("description", ["plain", "caf\u00e9"])
def test_a_file_saved_as_utf16_or_utf32_without_a_bom_is_told_so(
        tmp_path: Path, encoding: str, description: str) -> None:
    # iconv -t UTF-16LE writes no byte order mark: "character U+0000 is not allowed" at
    # 1:2, or a byte that is not UTF-8 somewhere, left its author to guess.
    path = tmp_path / "wide.yaml"
    path.write_bytes((H + f"description: {description}\n").encode(encoding))
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set([path])
    assert [str(i) for i in raised.value.issues] == [
        f"{path}:1:1: cannot read: UTF-16 or UTF-32 text without a byte order mark (a NUL "
        "among its first characters): save it as UTF-8"]


@pytest.mark.parametrize("line_end", ["\r", "\r\n"], ids=["cr", "crlf"])
def test_a_character_yaml_refuses_is_placed_on_the_line_yaml_counts(line_end: str) -> None:
    # An upload is read as sent: a lone CR ends its lines too.
    text = line_end.join(["version: 1", "name: t", "description: a\x00b", ""])
    assert issues(text) == ["3:15: YAML syntax error: character U+0000 is not allowed (a "
                            "control character: YAML takes tab and line ends only)"]


@pytest.mark.parametrize("line_end", [b"\r", b"\r\n"], ids=["cr", "crlf"])
def test_a_byte_that_is_not_utf8_is_placed_on_the_line_yaml_counts(
        tmp_path: Path, line_end: bytes) -> None:
    # A file saved with old Mac line ends: YAML (and every other issue) counts a lone CR
    # as the end of a line, as the editor that wrote it does.
    path = tmp_path / "mac.yaml"
    path.write_bytes(line_end.join([b"version: 1", b"name: t", b"description: caf\xe9", b""]))
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set([path])
    assert [str(i) for i in raised.value.issues] == [
        f"{path}:3:17: cannot read: byte 0xe9 is not UTF-8 text"]


def test_an_entry_named_like_a_policy_that_is_no_file_refuses_the_set(tmp_path: Path) -> None:
    # A policy whose link broke must not drop out of the set unnoticed: a reload
    # would then run without its rules.
    (tmp_path / "good.yaml").write_text(H, encoding="utf-8")
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    (tmp_path / "loop.yml").symlink_to(tmp_path / "loop.yml")
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "sub.yaml").mkdir()  # a directory so named is no policy: left alone
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set([tmp_path])
    assert [str(i) for i in raised.value.issues] == [
        f"{tmp_path / name}: {NOT_A_FILE}" for name in ("gone.yaml", "loop.yml", "pipe.yaml")]


def test_set_orders_by_priority_then_name(tmp_path: Path) -> None:
    for name, priority in (("zeta", 10), ("alpha", 50), ("beta", 10)):
        rules = f"rules:\n  - name: {name}-rule\n    then: accept\n"
        (tmp_path / f"{name}.yaml").write_text(
            f"version: 1\nname: {name}\npriority: {priority}\n{rules}"
        )
    policy_set = load_policy_set([tmp_path])
    assert [p.name for p in policy_set.policies] == ["beta", "zeta", "alpha"]
    assert [r.name for r in policy_set.enforced_rules] == ["beta-rule", "zeta-rule", "alpha-rule"]


def test_names_must_be_unique_across_the_set() -> None:
    """Each repeat is an issue at its name that says where the name was first used."""
    rule = "rules:\n  - name: shared\n    then: accept\n"
    with pytest.raises(PolicyLoadError) as raised:
        load_policy_set_from_sources(
            [
                ("one@r1", "version: 1\nname: one\n" + rule),
                ("two@r2", "# the same name\nversion: 1\nname:   one\n" + rule),
            ]
        )
    assert [str(i) for i in raised.value.issues] == [
        "two@r2:3:9: policy name 'one' is also used at one@r1:2:7",
        "two@r2:5:11: rule name 'shared' is also used at one@r1:4:11",
    ]


def test_a_report_mode_copy_may_name_its_rules_as_the_enforced_policy_does() -> None:
    rule = "rules:\n  - name: hold-it\n    when: {subject: hold}\n    then: quarantine\n"
    enforced = ("in.yaml", "version: 1\nname: inbound\n" + rule)
    trial = ("next.yaml", "version: 1\nname: inbound-next\nmode: report\n" + rule)
    policy_set = load_policy_set_from_sources([enforced, trial])
    verdict = evaluate_message(policy_set, b"Subject: hold\r\n\r\nbody\r\n",
                               Envelope(sender="a@b.test", recipients=("c@d.test",)))
    assert verdict.rules == ("hold-it", "report:hold-it")  # each points at one rule
    second = ("again.yaml", "version: 1\nname: inbound-again\nmode: report\n" + rule)
    with pytest.raises(PolicyLoadError) as raised:  # report:hold-it would name two
        load_policy_set_from_sources([enforced, trial, second])
    assert [str(i) for i in raised.value.issues] == [
        "again.yaml:5:11: rule name 'hold-it' is also used at next.yaml:5:11"]


def test_content_hash_ignores_labels_order_and_line_endings() -> None:
    one, two = H + "priority: 1\n", "version: 1\nname: u\n"
    first = load_policy_set_from_sources([("a", one), ("b", two)]).content_hash
    assert (
        load_policy_set_from_sources([("x", two), ("y", one.replace("\n", "\r\n"))]).content_hash
        == first
    )
    assert (
        load_policy_set_from_sources([("a", one), ("b", two + "# changed\n")]).content_hash != first
    )
    assert len(first) == 64


def test_empty_set_from_sources_accepts_everything() -> None:
    policy_set = load_policy_set_from_sources([])
    assert policy_set.policies == ()
    assert policy_set.limits.max_recipients is None
    assert policy_set.parser_caps(Envelope()) == (1000, 100)


def test_defaults_and_values() -> None:
    loaded = policy(
        """
        description: d
        mode: report
        priority: 7
        limits: {max_message_bytes: 25MB, max_attachment_bytes: "512 KiB", max_recipients: 3}
        sanitize: {html: true, allowed_url_schemes: [HTTPS]}
        tag_flags: false
        rules:
          - name: r
            then: reject
            code: 554
          - name: q
            then: quarantine
            message: held for review
          - name: t
            then: {action: tempfail}
            code: "450 4.2.0"
            message: try later
        """
    ).policies[0]
    assert (loaded.mode, loaded.priority, loaded.description, loaded.tag_flags) == (
        Mode.REPORT,
        7,
        "d",
        False,
    )
    assert loaded.limits.max_message_bytes == 25 * 1024 * 1024
    assert loaded.limits.max_attachment_bytes == 512 * 1024
    assert loaded.limits.on_structure_limit is None  # not written: the set decides
    assert loaded.sanitize.allowed_url_schemes == frozenset({"https"})
    assert loaded.sanitize.remote_images == "keep"
    reject, quarantine, tempfail = loaded.rules
    assert reject.reply == SmtpReply("554", "5.7.1", "Message rejected by policy")
    assert (quarantine.then.terminal, quarantine.reason) == (Action.QUARANTINE, "held for review")
    assert tempfail.reply == SmtpReply("450", "4.2.0", "try later")


def test_limits_and_sanitizing_combine_as_the_strictest() -> None:
    a = H + (
        "limits: {max_message_bytes: 100, max_recipients: 5, on_structure_limit: quarantine}\n"
        "sanitize: {html: true, remote_images: keep, allowed_url_schemes: [http, https, cid]}\n"
    )
    b = "version: 1\nname: b\nlimits: {max_message_bytes: 200, max_mime_depth: 4}\n" + (
        "sanitize: {html: true, remote_images: strip, allowed_url_schemes: [https, cid, mailto],"
        " signed_mail: sanitize}\n"
    )
    report = "version: 1\nname: c\nmode: report\nlimits: {max_message_bytes: 1}\n"
    policy_set = load_policy_set_from_sources([("a", a), ("b", b), ("c", report)])
    limits = policy_set.limits
    assert (limits.max_message_bytes, limits.max_recipients, limits.max_mime_depth) == (100, 5, 4)
    assert limits.on_structure_limit is StructureAction.QUARANTINE  # only a sets it
    assert policy_set.parser_caps(Envelope())[1] == 4
    assert policy_set.html_options is not None
    assert policy_set.html_options.remote_images == "strip"
    assert policy_set.html_options.allowed_url_schemes == frozenset({"https", "cid"})
    assert policy_set.skip_signed is True  # a's default "skip" wins
    assert policy_set.tag_flags is True


def test_stored_text_keeps_file_based_tests_unresolved() -> None:
    """A policy uploaded from git loads although its sample files stay in the repository."""
    text = H + "tests:\n  - name: c\n    message: samples/a.eml\n    recipients: [a@b.test]\n"
    text += "    expect: accept\n"
    assert check_policy_text("stored", text) == []
    (case,) = load_policy_set_from_sources([("stored", text)]).policies[0].tests
    assert case.message == Path("samples/a.eml")


def _rule(when: str) -> str:
    return H + f"rules:\n  - name: r\n    when: {when}\n    then: accept\n"


def test_conditions_nested_too_deeply_are_an_issue_with_a_line() -> None:
    when = "{not: " * 40 + "{has_html: true}" + "}" * 40
    assert issues(_rule(when)) == [
        f"5:{11 + 6 * (MAX_NESTING + 1)}: rule 'r': nested more than {MAX_NESTING} levels deep"
    ]


def test_yaml_nested_too_deeply_is_an_issue_not_a_traceback() -> None:
    """Placed where the parser stopped: the column depends on the stack's depth."""
    [found] = issues(H + "description: " + "[" * 2000 + "]" * 2000 + "\n")
    assert found.startswith("3:") and found.endswith(": YAML nested too deeply")


def test_an_unknown_flag_is_refused() -> None:
    found = issues(_rule("{flag: [malformed, malformd]}"))
    assert len(found) == 1
    assert found[0].startswith("5:30: rule 'r': expected one of ambiguous_filename, ")
    assert found[0].endswith("; got 'malformd' (did you mean 'malformed'?)")


def test_a_pattern_too_costly_to_compile_is_refused() -> None:
    found = issues(_rule(r"{subject: '\pL{440}'}"))
    assert len(found) == 1 and "is too complex: 526244 RE2 instructions" in found[0]


def test_a_large_pattern_the_loader_takes_searches_a_long_text_in_linear_time() -> None:
    # \pL{80}: 95,685 instructions, within the limit. In 8 MiB RE2's DFA had no room
    # beside the program and every search ran in its NFA: seconds for these 2 MB of
    # letters (a 4 MB body is searched once per rendering); milliseconds with its DFA.
    pattern = compile_regex(r"\pL{80}x")
    started = time.monotonic()
    assert not pattern.test("é" * 1_000_000)
    assert time.monotonic() - started < 0.5


def test_a_set_of_patterns_is_bounded_together_and_an_alias_compiles_once() -> None:
    # \pL{60}: about 72,000 instructions each; 40 different ones pass the budget.
    rules = "".join(
        f"  - name: r{i}\n    when: {{subject: '\\pL{{60}}{i}'}}\n    then: accept\n"
        for i in range(40)
    )
    found = issues(H + "rules:\n" + rules)
    assert 0 < len(found) < 40
    assert all(f"exceed {MAX_SET_PROGRAM_SIZE} RE2 instructions" in issue for issue in found)
    # The same pattern through an alias, 100 times: compiled (and counted) once.
    aliased = "  - name: a0\n    when: {subject: &p '\\pL{60}'}\n    then: accept\n" + "".join(
        f"  - name: a{i}\n    when: {{subject: *p}}\n    then: accept\n" for i in range(1, 100)
    )
    assert issues(H + "rules:\n" + aliased) == []


def test_a_file_too_large_is_refused_before_it_is_read(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as out:
        out.truncate(4 * MAX_SOURCE_CHARS + 1)  # sparse: no disk, and never read
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_set([huge])
    assert [(i.file, i.message) for i in caught.value.issues] == [
        (str(huge), f"larger than {MAX_SOURCE_CHARS} characters")
    ]


def test_numbers_mean_what_they_say_as_yaml_1_2_reads_them() -> None:
    # PyYAML's YAML 1.1 reads 010 as eight and 1:30 as ninety.
    loaded = load_policy_set_from_sources(
        [("t.yaml", H + "limits: {max_recipients: 010, max_message_bytes: 0x400}\n")]
    )
    assert (loaded.limits.max_recipients, loaded.limits.max_message_bytes) == (10, 1024)
    assert issues(H + "limits: {max_recipients: 1:30}\n") == [
        "3:26: limits.max_recipients: expected an integer, got the string '1:30'"
    ]


def test_yaml_1_1_booleans_are_text_as_yaml_1_2_reads_them() -> None:
    # PyYAML's YAML 1.1 read these as false: a subject pattern, a prefix, a header value.
    loaded = load_policy_set_from_sources([("t.yaml", H + (
        "rules:\n  - name: r\n    when: {subject: ^NO$}\n"
        "    then: {subject_prefix: off, add_header: {X-Spam: no}}\n"
    ))])
    [rule] = loaded.enforced_rules
    assert (rule.then.subject_prefix, rule.then.add_headers) == ("off", (("X-Spam", "no"),))
    envelope = Envelope(recipients=("a@example.com",))
    matched = [evaluate_message(loaded, f"Subject: {subject}\r\n\r\nx\r\n".encode(), envelope).rules
               for subject in ("NO", "False")]
    assert matched == [("r",), ()]


@pytest.mark.parametrize(("body", "value"), [
    pytest.param("tag_flags: yes\n", True, id="top-level"),
    pytest.param("tag_flags: Off\n", False, id="capitalised"),
    pytest.param("tag_flags: ON\n", True, id="upper-case"),
])
def test_a_boolean_field_takes_yaml_1_1_words_as_it_did(body: str, value: bool) -> None:
    """A policy written for the YAML 1.1 reader keeps loading, and meaning the same."""
    [policy] = load_policy_set_from_sources([("t.yaml", H + body)]).policies
    assert policy.tag_flags is value


@pytest.mark.parametrize(("body", "expected"), [
    pytest.param("tag_flags: oN\n", "3:12: tag_flags: expected true or false, got the string 'oN'", id="mixed-case"),
    pytest.param("rules:\n  - name: r\n    then: accept\n    sanitize: n\n",
                 "6:15: rule 'r': sanitize: expected true or false, got the string 'n'", id="y-n-never-were"),
    pytest.param("tag_flags: maybe\n", "3:12: tag_flags: expected true or false, got the string 'maybe'",
                 id="other-text"),
])
def test_a_boolean_field_refuses_other_text(body: str, expected: str) -> None:
    assert issues(H + body) == [expected]


def test_an_empty_condition_is_refused_not_read_as_every_message() -> None:
    assert issues(_rule("{}")) == [
        "5:11: rule 'r': an empty condition holds for every message; leave 'when' out to mean that"
    ]
    assert issues(_rule("{not: {}}")) == [
        "5:17: rule 'r': an empty condition holds for every message; leave 'when' out to mean that"
    ]


def test_a_policy_test_with_a_client_ip_no_client_has_is_refused() -> None:
    text = (H + "tests:\n  - name: t\n    raw: \"Subject: x\\n\\nhi\\n\"\n"
            "    recipients: [a@example.org]\n    client_ip: 10.1.2.300\n    expect: accept\n")
    assert issues(text) == ["7:16: test 't': client_ip: expected an IPv4 or IPv6 address, got '10.1.2.300'"]


TOO_LARGE = [
    pytest.param(
        'limits:\n  max_attachment_bytes: "' + "9" * 5000 + 'MB"\n',
        f"4:25: limits.max_attachment_bytes: size too large: at most {MAX_INTEGER} bytes, "
        "got the string "
        f"'{'9' * 80}'... (5002 characters)",
        id="size-string-past-pythons-digit-limit",
    ),
    pytest.param(
        "limits: {max_message_bytes: 8589934592 GiB}\n",  # 2**63
        f"3:29: limits.max_message_bytes: size too large: at most {MAX_INTEGER} bytes, "
        "got the string '8589934592 GiB'",
        id="size-string-times-its-unit",
    ),
    pytest.param(
        f"limits: {{max_message_bytes: {MAX_INTEGER + 1}}}\n",
        f"3:29: limits.max_message_bytes: size too large: at most {MAX_INTEGER} bytes, "
        f"got {MAX_INTEGER + 1}",
        id="size-integer",
    ),
    pytest.param(
        "rules:\n  - name: r\n    when: {size_over: " + "9" * 5000 + "}\n    then: reject\n",
        f"5:23: rule 'r': when.size_over: size too large: at most {MAX_INTEGER} bytes, got {'9' * 80}... "
        "(5000 characters)",
        id="size-in-a-condition",
    ),
    pytest.param(
        "priority: " + "9" * 5000 + "\n",
        f"3:11: priority: integer too large: at most {MAX_INTEGER}, got {'9' * 80}... "
        "(5000 characters)",
        id="integer-past-pythons-digit-limit",
    ),
    pytest.param(
        f"limits: {{max_recipients: {MAX_INTEGER + 1}}}\n",
        f"3:26: limits.max_recipients: integer too large: at most {MAX_INTEGER}, "
        f"got {MAX_INTEGER + 1}",
        id="integer-past-63-bits",
    ),
    pytest.param(
        "priority: 0x8000000000000000\n",
        f"3:11: priority: integer too large: at most {MAX_INTEGER}, got 0x8000000000000000",
        id="hex-integer-past-63-bits",
    ),
]


@pytest.mark.parametrize(("body", "expected"), TOO_LARGE)
def test_a_number_too_large_is_an_issue_at_its_node(body: str, expected: str) -> None:
    # Before: int() past Python's 4300 digits raised ValueError out of the loader, and a
    # long integer was "expected an integer, got an integer".
    assert issues(H + body) == [expected]


def test_the_largest_size_and_integer_load() -> None:
    loaded = load_policy_set_from_sources(
        [("t.yaml", H + f"priority: {MAX_INTEGER}\nlimits: {{max_message_bytes: '{MAX_INTEGER}B'}}\n")]
    )
    assert (loaded.policies[0].priority, loaded.limits.max_message_bytes) == (MAX_INTEGER, MAX_INTEGER)


def test_a_huge_number_where_text_belongs_still_says_quote_it() -> None:
    assert issues("version: 1\nname: " + "9" * 5000 + "\n") == [
        "2:7: name: expected a string, got an integer (quote it to make it a string)"
    ]


QUARANTINE = "limits:\n  max_mime_parts: 3\n  on_structure_limit: quarantine\n"
STRUCTURE_COMBINATIONS = [
    pytest.param([QUARANTINE, "rules: []\n"], StructureAction.QUARANTINE, id="other-has-no-limits"),
    pytest.param(
        [QUARANTINE, "limits: {max_mime_depth: 4}\n"],
        StructureAction.QUARANTINE,
        id="other-has-limits-without-it",
    ),
    pytest.param(
        [QUARANTINE, "limits: {on_structure_limit: reject}\n"],
        StructureAction.REJECT,
        id="reject-wins-when-both-set-it",
    ),
    pytest.param(
        [QUARANTINE, "mode: report\nlimits: {on_structure_limit: reject}\n"],
        StructureAction.QUARANTINE,
        id="report-mode-sets-nothing",
    ),
    pytest.param(["limits: {max_mime_parts: 3}\n", "rules: []\n"], StructureAction.REJECT, id="none-sets-it"),
    pytest.param([], StructureAction.REJECT, id="no-policies"),
]


@pytest.mark.parametrize(("bodies", "expected"), STRUCTURE_COMBINATIONS)
def test_on_structure_limit_combines_only_the_policies_that_set_it(
    bodies: list[str], expected: StructureAction
) -> None:
    sources = [(f"p{n}.yaml", f"version: 1\nname: p{n}\n{body}") for n, body in enumerate(bodies)]
    assert load_policy_set_from_sources(sources).limits.on_structure_limit is expected
