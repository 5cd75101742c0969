"""Issues name the line of what is wrong: an alias at the alias, a list item at the item."""

from __future__ import annotations

import pytest

from postwarden_policies import (
    Envelope,
    check_policy_text,
    evaluate,
    load_policy_set_from_sources,
    parse_message,
)

from .policy_helpers import body_rule_matches, text_message


def _issues(text: str) -> list[str]:
    return [str(issue) for issue in check_policy_text("p.yaml", text)]


def test_an_aliased_rule_repeating_a_name_is_reported_at_the_alias() -> None:
    text = "version: 1\nname: p\nrules:\n  - &r\n    name: dup\n    then: reject\n  - *r\n"
    assert _issues(text) == ["p.yaml:7:5: duplicate rule name 'dup' (first at line 5)"]


def test_a_flow_alias_is_reported_at_the_alias() -> None:
    text = "version: 1\nname: p\nrules: [&r {name: dup, then: reject},\n        *r]\n"
    assert _issues(text) == ["p.yaml:4:9: duplicate rule name 'dup' (first at line 3)"]


def test_a_bad_glob_is_reported_at_its_own_item() -> None:
    text = (
        "version: 1\nname: p\nrules:\n  - name: r\n    when:\n      attachment:\n"
        '        filename:\n          - "*.exe"\n          - "*.[z-a]"\n    then: reject\n'
    )
    assert _issues(text) == [
        "p.yaml:9:13: rule 'r': invalid glob list '*.[z-a]': invalid character class range: z-a"
    ]


def test_every_bad_glob_of_a_list_is_reported() -> None:
    text = (
        "version: 1\nname: p\nrules:\n  - name: r\n    when:\n"
        "      helo: ['[z-a].test', ok.test,\n             '[9-0].test']\n    then: reject\n"
    )
    assert [issue.split(": rule")[0] for issue in _issues(text)] == [
        "p.yaml:6:14", "p.yaml:7:14"
    ]


def test_a_control_character_deep_in_a_file_is_placed() -> None:
    text = ("version: 1\nname: p\n" + "# a comment\n" * 170
            + "rules:\n  - {name: r\f, then: reject}\n")
    assert _issues(text) == [
        "p.yaml:174:13: YAML syntax error: character U+000C is not allowed (a control "
        "character: YAML takes tab and line ends only)"
    ]


def test_a_lone_surrogate_escape_is_an_issue_where_text_is_read() -> None:
    # PyYAML makes "\ud800" a lone surrogate, which no pattern compiles from (it raised).
    rules = (
        "version: 1\nname: p\nrules:\n"
        '  - {name: r1, when: {subject: "a\\ud800"}, then: reject}\n'
        '  - {name: r2, when: {attachment: {filename: ["*.\\udfff"]}}, then: reject}\n'
        '  - {name: r3, then: {add_header: {X-Tag: "\\udcff"}}}\n'
    )
    assert _issues(rules) == [
        f"p.yaml:{line}:{column}: rule '{rule}': {path}holds \\u{code}, a lone surrogate: no "
        "character"
        for line, column, rule, path, code in (
            (4, 32, "r1", "when.subject: ", "d800"), (5, 47, "r2", "", "dfff"),  # a list's item
            (6, 43, "r3", "", "dcff"))  # a header's value
    ]


def test_a_raw_test_message_takes_surrogates_only_for_bytes() -> None:
    raw = ('tests:\n  - {{name: t, raw: "Subject: {}\\r\\n\\r\\nx\\r\\n", recipients: [a@b.test],\n'
           "      expect: accept}}\n")
    head = "version: 1\nname: p\nrules:\n  - {name: r, then: accept}\n"
    assert _issues(head + raw.format("\\udcff")) == []  # the byte 0xff
    assert _issues(head + raw.format("\\ud800")) == [
        "p.yaml:6:20: test 't': raw: holds \\ud800, a lone surrogate: no character, only "
        "\\udc80 to \\udcff (the bytes 0x80 to 0xff)"
    ]


def test_a_merge_key_is_refused_in_words() -> None:
    text = "version: 1\nname: p\nrules:\n  - &base\n    name: r1\n    then: reject\n" \
           "  - <<: *base\n    name: r2\n"
    assert _issues(text) == [
        "p.yaml:7:5: rule 'r2': YAML merge keys (<<) are not supported: alias the whole "
        "value, or write its keys out"
    ]


def test_a_pattern_is_quoted_as_written() -> None:
    text = "version: 1\nname: p\nrules:\n  - {name: r, when: {subject: '(a)\\1'}, then: reject}\n"
    assert _issues(text) == [
        "p.yaml:4:31: rule 'r': when.subject: invalid RE2 regular expression '(a)\\1': invalid "
        "escape "
        "sequence: \\1 (RE2 has no backreferences)"
    ]


def test_a_surrogate_pair_of_escapes_is_one_character() -> None:
    # json.dumps writes an emoji so; PyYAML leaves the two escapes apart.
    text = ('version: 1\nname: p\nrules:\n'
            '  - {name: r, when: {subject: "\\ud83d\\udcb0 offer"}, then: reject}\n')
    assert _issues(text) == []
    policy_set = load_policy_set_from_sources([("p.yaml", text)])
    raw = b"Subject: =?utf-8?b?8J+SsCBvZmZlcg==?=\r\n\r\nx\r\n"  # the emoji, " offer"
    assert evaluate(policy_set, parse_message(raw, Envelope())).rules == ("r",)


def test_an_item_under_a_dash_alone_begins_at_the_dash() -> None:
    """`-` on its own line, the case's keys below: its line is the dash's, as the `- name:`
    form's is (the test report's file:line, an issue about the whole item)."""
    text = ("version: 1\nname: p\nrules:\n  -  # no name\n\n    then: accept\n"
            "tests:\n  -\r\n    name: t\n    raw: x\n    recipients: [a@b.test]\n")
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        "p.yaml:4:3: missing required key 'name' in rule",
        "p.yaml:8:3: test 't': missing required key 'expect' in test",
    ]
    policy = load_policy_set_from_sources([("p.yaml", text.replace(
        "  -  # no name\n\n", "  - name: r\n") + "    expect: accept\n")])
    assert policy.policies[0].tests[0].where == (7, 3)


def test_an_item_under_a_dash_alone_begins_at_the_dash_whatever_the_line_ends() -> None:
    """An upload is read as sent: with old Mac line ends (CR only) the item's line is the
    dash's too, as YAML counts lines, not its first key's."""
    text = ("version: 1\nname: p\nrules:\n  - name: r\n    then: accept\ntests:\n  -\n"
            "    # the case\n    name: t\n    raw: x\n    recipients: [a@b.test]\n")
    for line_end in ("\r", "\r\n"):
        assert [str(i) for i in check_policy_text("p.yaml", text.replace("\n", line_end))] \
            == ["p.yaml:7:3: test 't': missing required key 'expect' in test"]


def test_an_unquoted_glob_is_told_to_be_quoted() -> None:
    """`*.exe` unquoted is a YAML alias: PyYAML's words alone never say so."""
    hint = ("(a value that starts with * is read as a YAML alias, one with & as an anchor: "
            "quote it, as in '*.exe')")
    for condition in ("{attachment: {filename: *.exe}}", "{attachment: {filename: [*exe]}}"):
        text = f"version: 1\nname: p\nrules:\n  - name: r\n    when: {condition}\n    then: x\n"
        assert _issues(text)[0].endswith(hint)
    text = "version: 1\nname: p\nrules:\n  - name: r\n    when: {sender: [@x]}\n    then: accept\n"
    assert _issues(text) == ["p.yaml:5:21: YAML syntax error: found character '@' that cannot "
                             "start any token (@, ` and % cannot start a YAML value: quote it)"]


def test_a_value_holding_a_colon_and_space_is_told_to_be_quoted() -> None:
    """`message: Rejected: spam`, the commonest reply text, is a key inside a value."""
    text = ("version: 1\nname: p\nrules:\n  - name: r\n    when: {helo: x}\n"
            "    then: reject\n    message: Rejected: spam\n")
    assert _issues(text) == ["p.yaml:7:22: YAML syntax error: mapping values are not allowed "
                             "here (': ' in a value starts a key: quote the value, as in "
                             "'Rejected: spam')"]


@pytest.mark.parametrize(("lines", "at"), [
    ("     when: {subject: a}\n    then: accept\n", "5:10"),
    ("    when:\n      subject a\n      body: b\n    then: accept\n", "7:11"),
])
def test_a_key_read_as_more_of_the_value_above_is_told_so(lines: str, at: str) -> None:
    """A line indented too deep, or below a key without its ':', continues the plain value
    above it: its key is no ': ' in a value to quote, as PyYAML's words had it told."""
    text = f"version: 1\nname: p\nrules:\n  - name: r\n{lines}"
    assert _issues(text) == [f"p.yaml:{at}: YAML syntax error: mapping values are not allowed "
                             "here (YAML reads this line as more of the value above it: check "
                             "its indentation, and that the key above has its ':')"]


def test_a_tab_that_indents_is_told_as_a_tab() -> None:
    """An editor that indents with tabs: PyYAML names the character as '\\t' only."""
    text = "version: 1\nname: p\nrules:\n  - name: r\n\tthen: accept\n"
    assert _issues(text) == ["p.yaml:5:1: YAML syntax error: found character '\\t' that "
                             "cannot start any token (a tab: indent with spaces)"]


def test_an_unquoted_ipv6_address_in_brackets_is_told_to_be_quoted() -> None:
    """`[127.0.0.1, ::1]`: in [ ] or { } a value that starts with : is no value to YAML,
    and PyYAML's words name only the colon."""
    for condition in ("{client_ip: [127.0.0.1, ::1]}", "{client_ip: ::ffff:10.0.0.0/104}"):
        text = f"version: 1\nname: p\nrules:\n  - name: r\n    when: {condition}\n" \
               "    then: accept\n"
        [issue] = _issues(text)
        assert issue.endswith("YAML syntax error: expected the node content, but found ':' "
                              "(in [ ] or { } a value that starts with : is not read as one: "
                              "quote it, as in '::1')")


def test_a_control_character_a_yaml_escape_put_in_a_pattern_is_refused() -> None:
    """"\\bfree\\b" in double quotes is backspaces: the rule would silently never match."""
    text = ('version: 1\nname: p\nrules:\n  - name: r\n    when: {subject: "\\bfree\\b",'
            ' header: {X-A: "a\\x01"}, body: "a\\tb\\r\\nc"}\n    then: reject\n')
    assert _issues(text) == [
        "p.yaml:5:21: rule 'r': when.subject: RE2 regular expression '\\x08free\\x08' holds the "
        "control "
        "character U+0008: a double-quoted YAML value reads \\b as it: double the backslash "
        "(\\\\b) or quote the pattern with ' '",
        "p.yaml:5:47: rule 'r': RE2 regular expression 'a\\x01' holds the control character "
        "U+0001: write it as \\x01",
    ]
    assert _issues(text.replace('"\\bfree\\b"', "'\\bfree\\b'").replace("\\x01", "\\\\x01")) == []


@pytest.mark.parametrize(("pattern", "char"), [
    ("(?i)\\bвиагра\\b", "в"), ("\\bcafé\\b", "é"), ("\\b(cialis|виагра)\\b", "а"),
    ("\\b[а-я]+", "а"), ("(?:\\bθ)", "θ"),
])
def test_a_word_boundary_beside_a_letter_outside_ascii_is_refused(
    pattern: str, char: str
) -> None:
    """RE2's \\b knows ASCII word characters only: \\bcafé\\b loaded, and never
    matched "un café noir", silently."""
    text = (f"version: 1\nname: p\nrules:\n  - name: r\n    when: {{body: '{pattern}'}}\n"
            "    then: reject\n")
    assert _issues(text) == [
        f"p.yaml:5:18: rule 'r': when.body: RE2 regular expression '{pattern}' has \\b beside "
        f"'{char}', "
        "which RE2's \\b takes for no word character (it knows ASCII letters, digits and _ "
        "only): it holds at no start or end of such a word; write (?:^|[^\\pL\\pN_]) before "
        "the word and (?:[^\\pL\\pN_]|$) after it"
    ]


def test_the_boundaries_the_refusal_offers_find_the_word() -> None:
    written = "(?i)(?:^|[^\\pL\\pN_])виагра(?:[^\\pL\\pN_]|$)"
    for text in ("купить ВИАГРА сейчас", "виагра", "(виагра)"):
        assert body_rule_matches(written, text_message("text/plain", text))
    assert not body_rule_matches(written, text_message("text/plain", "мегавиагра"))


@pytest.mark.parametrize("pattern", ["\\bfree\\b", "\\\\bé", "\\b(?:café)"])
def test_a_word_boundary_beside_ascii_is_taken(pattern: str) -> None:
    text = (f"version: 1\nname: p\nrules:\n  - name: r\n    when: {{body: '{pattern}'}}\n"
            "    then: reject\n")
    assert _issues(text) == []


def test_an_anchor_defined_twice_names_both_lines() -> None:
    # A copied rule keeps its anchor; PyYAML said only "second occurrence".
    text = ("version: 1\nname: p\nrules:\n  - &r {name: a, then: reject}\n"
            "  - &r {name: b, then: reject}\n")
    assert _issues(text) == [
        "p.yaml:5:5: YAML syntax error: found duplicate anchor 'r' (first at line 4): "
        "give each anchor its own name"
    ]


@pytest.mark.parametrize(("when", "at", "problem", "closed"), [
    ("{subject: [SPAM] offer}", "5:28", "expected ',' or '}', but got '<scalar>'", "]"),
    ("\n      subject: [SPAM] offer", "6:23",
     "expected the end of a block, but found '<scalar>'", "]"),
    ("\n      subject: {urgent} now", "6:25",
     "expected the end of a block, but found '<scalar>'", "}"),
])
def test_text_after_a_list_or_mapping_value_is_told_to_be_quoted(
    when: str, at: str, problem: str, closed: str
) -> None:
    """A subject tag such as [SPAM] starts a YAML list; "check this line's indentation"
    sent the author to the wrong place."""
    text = f"version: 1\nname: p\nrules:\n  - name: r\n    when: {when}\n    then: reject\n"
    assert _issues(text) == [
        f"p.yaml:{at}: YAML syntax error: {problem} (a value that starts with [ or {{ is "
        f"read as a list or a mapping, which ends at its {closed}: quote the whole value, "
        "as in '[SPAM] offer', or '\\[SPAM\\] offer' for a pattern, where [SPAM] is a class "
        "of one letter)"
    ]


def test_text_after_a_quoted_value_is_told_to_quote_the_whole_value() -> None:
    text = ('version: 1\nname: p\nrules:\n  - name: r\n    then: reject\n'
            '    message: "Rejected" by policy\n')
    assert _issues(text) == [
        "p.yaml:6:25: YAML syntax error: expected the end of a block, but found '<scalar>' "
        "(a quoted value ends at its closing quote: quote the whole value)"
    ]


@pytest.mark.parametrize(("value", "hint"), [
    ('"Rejected by policy', ""),
    ("'Rejected by policy", " (in single quotes, write ' as '', as in 'it''s')"),
])
def test_a_quoted_value_never_closed_is_placed_at_its_quote(value: str, hint: str) -> None:
    """PyYAML finds it out at the end of the file, lines away from the mistake."""
    text = (f"version: 1\nname: p\nrules:\n  - name: r\n    then: reject\n    message: {value}\n"
            "  - name: s\n    then: accept\n")
    assert _issues(text) == [
        "p.yaml:6:14: YAML syntax error: this quoted value is not closed before the file "
        f"ends{hint}"
    ]


@pytest.mark.parametrize(("when", "at", "problem", "hint"), [
    ("{body: %PDF-}", "5:18", "found character '%' that cannot start any token",
     "@, ` and % cannot start a YAML value: quote it"),
    ('{body: "\\d+ USD"}', "5:20", "found unknown escape character 'd'",
     "in double quotes \\ starts an escape: write a pattern in single quotes, as in '\\d+'"),
    ("\n      size_over: > 5", "6:20", "expected a comment or a line break, but found '5'",
     "| and > start text written on the lines below: quote a value that starts with them, "
     "as in '> 5'"),
    ("\n      subject: - sale", "6:16", "sequence entries are not allowed here",
     "a value that starts with '- ' is read as a list item: quote it, as in '- sale'"),
    ("\n      subject: ? what", "6:16", "mapping keys are not allowed here",
     "a value that starts with '? ' is read as a key: quote it"),
    ("{subject: Re: hi}", "5:23", "expected ',' or '}', but got ':'",
     "': ' in a value starts a key: quote the value, as in 'Rejected: spam'"),
])
def test_a_value_starting_as_yaml_syntax_is_told_to_be_quoted(
    when: str, at: str, problem: str, hint: str
) -> None:
    """PyYAML's words alone name a token, not the value the author wrote."""
    text = f"version: 1\nname: p\nrules:\n  - name: r\n    when: {when}\n    then: reject\n"
    assert _issues(text) == [f"p.yaml:{at}: YAML syntax error: {problem} ({hint})"]


def test_an_alias_before_its_anchor_says_where_the_anchor_is() -> None:
    """x-common: kept at the end of a file: "quote it, as in '*.exe'" misled."""
    text = ("version: 1\nname: p\nlimits: *common\n"
            "x-common: &common\n  max_recipients: 5\n")
    assert _issues(text) == [
        "p.yaml:3:9: YAML syntax error: found undefined alias 'common' (its anchor &common "
        "comes later, at line 4: an anchor must be written before its aliases)"
    ]


@pytest.mark.parametrize(("lines", "at", "opened"), [
    ("    then:\n      action: quarantine\n      notify: [ops #oncall]\n"
     "    message: held\n", "7:20", "[ at line 7"),
    ("    when: {subject: spam #tag}\n    then: reject\n", "5:26", "{ at line 5"),
    ("    then: reject\n    when: {any: [{subject: a}, {body: 'b #c'}, {helo: x #y}]}\n",
     "6:57", "{ at line 6"),
    ("    then: reject\n    when: {sender: [a@x.test #b]}\n", "6:30", "[ at line 6"),
    ("    when: {sender: [a@x.test #b]}\n    # a comment\n\n    then: reject\n", "5:30",
     "[ at line 5"),
])
def test_a_closing_bracket_a_comment_hides_is_placed_at_the_comment(
    lines: str, at: str, opened: str
) -> None:
    """` #` starts a comment inside [ ] and { } too, taking the ] or } with it: PyYAML
    finds that out at the next line's value (or the file's end), away from the mistake."""
    text = f"version: 1\nname: p\nrules:\n  - name: r\n{lines}"
    closer = "]" if opened.startswith("[") else "}"
    assert _issues(text) == [
        f"p.yaml:{at}: YAML syntax error: the {opened} is not closed: its {closer} is in "
        "the comment that ' #' starts here (quote a value that holds #, as in "
        "'Ticket #12', or write the comment after the " + closer + ")"
    ]


@pytest.mark.parametrize(("lines", "at", "until"), [
    ("    when: {subject: spam\n    then: reject\n", "5:11 this {", "line 6"),
    ("    when: {any: [{subject: a}, {body: b}]\n    then: reject\n", "5:11 this {", "line 6"),
    ("    when: {subject: a,\n      body: b\n    then: reject\n", "5:11 this {", "line 7"),
    ("    when:\n      sender: [a@x.test, b@x.test\n  - name: s\n    then: accept\n",
     "6:15 this [", "line 7"),
    ("    then: reject\n    when: {subject: spam\n", "6:11 this {", "the file ends"),
    ("    then: reject\n    when:\n      sender: [a@x.test\n# end\n", "7:15 this [",
     "the file ends"),
])
def test_a_bracket_never_closed_is_placed_at_the_bracket(lines: str, at: str, until: str) -> None:
    """PyYAML finds a missing ] or } out at the next key (quoting its ':', with a hint to
    quote a value) or at the file's end: lines away from the bracket left open."""
    text = f"version: 1\nname: p\nrules:\n  - name: r\n{lines}"
    place, opened = at.split(" ", 1)
    closer = "]" if opened.endswith("[") else "}"
    assert _issues(text) == [
        f"p.yaml:{place}: YAML syntax error: {opened} is not closed before {until} (close it "
        f"with {closer})"
    ]


@pytest.mark.parametrize(("continued", "at"), [("      body: Re: b}", "6:15"),
                                              ("    body: Re: b}", "6:13")])
def test_a_key_in_a_bracket_continued_over_lines_is_still_told_to_be_quoted(
    continued: str, at: str
) -> None:
    text = ("version: 1\nname: p\nrules:\n  - name: r\n    when: {subject: a,\n"
            f"{continued}\n    then: reject\n")
    (issue,) = _issues(text)
    assert issue.startswith(f"p.yaml:{at}: YAML syntax error: expected ',' or '}}', but got "
                            "':' (': ' in a value starts a key")


@pytest.mark.parametrize("line", ["    when", "    then accept", "    then:accept",
                                  "    then\uff1a accept"])
def test_a_key_without_its_colon_is_placed_at_its_line(line: str) -> None:
    """PyYAML finds a key's ':' missing on the line after it (or at the file's end):
    the line it names is not the one to fix."""
    text = f"version: 1\nname: p\nrules:\n  - name: r\n{line}\n  - name: s\n    then: accept\n"
    assert _issues(text) == [
        "p.yaml:5:5: YAML syntax error: could not find expected ':' (a key on this line: write "
        "it as key: value, with a space after the ':')"
    ]


def test_a_comment_inside_a_list_written_over_lines_is_no_error() -> None:
    text = ("version: 1\nname: p\nrules:\n  - name: r\n    when:\n"
            "      sender: [a@x.test,  # the first\n               b@x.test]\n"
            "    then: reject\n")
    assert _issues(text) == []


@pytest.mark.parametrize(("pattern", "detail", "hint"), [
    ("(?<=Re: )spam", "invalid perl operator: (?<=", "RE2 has no lookahead or lookbehind"),
    ("free(?!dom)", "invalid perl operator: (?!", "RE2 has no lookahead or lookbehind"),
    ("(a)\\1", "invalid escape sequence: \\1", "RE2 has no backreferences"),
    ("(?P<w>a)(?P=w)", "invalid perl operator: (?P", "RE2 has no backreferences"),
    ("spam\\Z", "invalid escape sequence: \\Z", "RE2 writes the end of the text as \\z"),
    ("a++", "bad repetition operator: ++", "RE2 has no possessive repeats nor atomic groups"),
    ("(?>a+)", "invalid perl operator: (?>", "RE2 has no possessive repeats nor atomic groups"),
])
def test_a_pattern_using_what_re2_lacks_is_told_so(pattern: str, detail: str, hint: str) -> None:
    """RE2's own words ("invalid escape sequence: \\1") send an author of a Python or PCRE
    pattern after a typo, not a feature RE2 leaves out to search in linear time."""
    text = (f"version: 1\nname: p\nrules:\n  - name: r\n    when: {{subject: '{pattern}'}}\n"
            "    then: reject\n")
    (issue,) = _issues(text)
    assert issue.startswith(f"p.yaml:5:21: rule 'r': when.subject: invalid RE2 regular expression "
                            f"'{pattern}': {detail} ({hint}")


def test_a_bracket_in_a_comment_the_error_is_not_after_gets_no_such_hint() -> None:
    text = ("version: 1\nname: p\nrules:\n  - name: r\n    then: reject\n"
            "    when: {sender: [a@x.test,  # see [docs]\n                    'b@x.test' c]}\n")
    (issue,) = _issues(text)
    assert issue.startswith("p.yaml:7:32: YAML syntax error: expected ',' or ']'")
