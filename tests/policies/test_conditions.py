"""Each condition key, compiled from YAML and matched against facts built by hand."""

from __future__ import annotations

from typing import Any

import pytest

from postwarden_policies import (
    check_policy_text,
    client_ip,
    conditions,
    evaluate_message,
    load_policy_set_from_sources,
)
from postwarden_policies.conditions import MatchInput
from postwarden_policies.facts import Envelope

from .policy_helpers import attachment, facts, html_part, rule_policy

EXE = attachment(1, "Setup.EXE", detected="application/x-dosexec", size=5000)
PDF = attachment(2, "report.pdf", "application/pdf", detected="application/pdf", size=200)
NAMELESS = attachment(3, None, "application/zip", detected="application/zip", size=50)
DECOMPOSED = attachment(4, "Rechnu\u0308ng.pdf", "application/pdf", size=200)  # as macOS sends


def matches(when: str, **kwargs: Any) -> bool:
    condition = rule_policy(when).enforced_rules[0].when
    return condition.match(MatchInput.of(facts(**kwargs))) is not None


CASES = [
    # envelope sender: exact, case-insensitive, <> for the null sender
    pytest.param("sender: [Someone@Elsewhere.TEST]", {}, True, id="sender-case-insensitive"),
    pytest.param("sender: other@elsewhere.test", {}, False, id="sender-other"),
    pytest.param("sender: ['<>']", {"sender": ""}, True, id="sender-null"),
    pytest.param("sender: ['<>']", {}, False, id="sender-null-not-set"),
    pytest.param("sender: [a@b.test]", {"sender": "<A@B.test>"}, True, id="sender-angle-brackets"),
    # domains: exact, and subdomains only when written .d or *.d
    pytest.param("sender_domain: [ELSEWHERE.test]", {}, True, id="domain-exact"),
    pytest.param(
        "sender_domain: [elsewhere.test]",
        {"sender": "a@mx.elsewhere.test"},
        False,
        id="domain-no-sub",
    ),
    pytest.param(
        "sender_domain: [.elsewhere.test]",
        {"sender": "a@mx.elsewhere.test"},
        True,
        id="domain-dot-sub",
    ),
    pytest.param(
        "sender_domain: ['*.elsewhere.test']",
        {"sender": "a@a.b.elsewhere.test"},
        True,
        id="domain-star",
    ),
    pytest.param("sender_domain: [.elsewhere.test]", {}, False, id="domain-dot-not-apex"),
    pytest.param(
        "sender_domain: [.test]", {"sender": "a@notelsewhere.test"}, True, id="domain-parent-tld"
    ),
    pytest.param("sender_domain: [.sewhere.test]", {}, False, id="domain-suffix-is-not-label"),
    pytest.param("sender_domain: [example.com]", {"sender": ""}, False, id="domain-null-sender"),
    # the message's domains as DNS compares them: no trailing dot, IDN as A-labels
    pytest.param(
        "sender_domain: [evil.test]", {"sender": "x@Evil.Test."}, True, id="domain-trailing-dot"
    ),
    pytest.param(
        "sender_domain: [.evil.test]", {"sender": "x@mx.evil.test.."}, True, id="sub-trailing-dots"
    ),
    pytest.param(
        "from_domain: [example.com]", {"from_address": "ceo@example.com."}, True,
        id="from-domain-trailing-dot",
    ),
    pytest.param(
        "from: [ceo@example.com]", {"from_address": "<CEO@example.com.>"}, True,
        id="from-trailing-dot",
    ),
    pytest.param(
        "recipient: [bob@example.com.]", {"recipients": ("bob@example.com",)}, True,
        id="policy-address-trailing-dot",
    ),
    pytest.param(
        "sender_domain: [xn--bcher-kva.example]", {"sender": "x@bücher.example"}, True,
        id="idn-a-label-rule",
    ),
    pytest.param(
        "sender_domain: [Bücher.example]", {"sender": "x@xn--bcher-kva.example"}, True,
        id="idn-u-label-rule",
    ),
    pytest.param(
        "sender_domain: [bücher.example]", {"sender": "x@BÜCHER.EXAMPLE"}, True, id="idn-case"
    ),
    pytest.param(
        "sender_domain: [bücher.example]", {"sender": "x@bücher。example"}, True,
        id="idn-ideographic-full-stop",
    ),
    pytest.param(
        "sender_domain: [bücher.example]", {"sender": "x@bucher.example"}, False, id="idn-other"
    ),
    # IDNA 2008 refuses symbol and emoji labels; resolvers take them (IDNA 2003).
    pytest.param("sender_domain: [xn--ls8h.la]", {"sender": "x@💩.la"}, True, id="emoji-domain"),
    pytest.param("sender_domain: [💩.la]", {"sender": "x@xn--ls8h.la"}, True,
                 id="emoji-domain-in-rule"),
    pytest.param("from_domain: [xn--ls8h.la]", {"from_address": "x@💩.LA"}, True,
                 id="emoji-from-domain"),
    pytest.param(
        "recipient_domain: ['*.bücher.example']",
        {"recipients": ("a@mx.xn--bcher-kva.example",)},
        True,
        id="idn-subdomains",
    ),
    pytest.param(
        "recipient: [user@bücher.example]", {"recipients": ("User@xn--bcher-kva.example",)}, True,
        id="idn-address",
    ),
    pytest.param("sender: [jörg@example.com]", {"sender": "JO\u0308RG@example.com"}, True,
                 id="local-part-decomposed"),
    # case folded as Unicode folds it (as Postfix does with SMTPUTF8), not lower() alone
    pytest.param("recipient: [straße@example.com]", {"recipients": ("STRASSE@example.com",)},
                 True, id="local-part-case-folded"),
    pytest.param("recipient: [finance@example.com]",
                 {"recipients": ("\ufb01nance@example.com",)}, True, id="local-part-ligature"),
    pytest.param("auth_user: [GROSS]", {"auth_user": "groß"}, True, id="auth-user-case-folded"),
    pytest.param(
        "sender_domain: [.evil.test]", {"sender": "x@bad☠label.evil.test"}, True,
        id="idn-invalid-label-kept",
    ),
    # header From
    pytest.param("from: [SOMEONE@elsewhere.test]", {}, True, id="from"),
    pytest.param(
        "from: [someone@elsewhere.test]", {"from_address": None}, False, id="from-missing"
    ),
    pytest.param("from_domain: [elsewhere.test]", {}, True, id="from-domain"),
    # recipients: true when any matches
    pytest.param(
        "recipient: [bob@example.com]",
        {"recipients": ("alice@example.com", "BOB@example.com")},
        True,
        id="recipient-any",
    ),
    pytest.param("recipient: [bob@example.com]", {}, False, id="recipient-none"),
    pytest.param("recipient_domain: [example.com]", {}, True, id="recipient-domain"),
    pytest.param(
        "recipient_domain: [example.org]",
        {"recipients": ("a@example.com", "b@sub.example.org")},
        False,
        id="recipient-domain-no-sub",
    ),
    # The milter is given an envelope address as the client wrote it; Postfix delivers
    # "ceo"@example.com and @relay:ceo@example.com to ceo@example.com.
    pytest.param("recipient: [ceo@example.com]", {"recipients": ('"ceo"@example.com',)}, True,
                 id="recipient-quoted"),
    pytest.param("recipient: [ceo@example.com]", {"recipients": ('<"c\\eo"@example.com>',)},
                 True, id="recipient-quoted-pair"),
    pytest.param("recipient: [ceo@example.com]",
                 {"recipients": ("<@relay.test,@mx.test:ceo@example.com>",)}, True,
                 id="recipient-source-route"),
    pytest.param("sender: [spam@example.com]", {"sender": '<"spam"@example.com>'}, True,
                 id="sender-quoted"),
    pytest.param("sender: [spam@example.com]", {"sender": "<@relay.test:spam@example.com>"},
                 True, id="sender-source-route"),
    pytest.param("sender: ['\"spam\"@example.com']", {"sender": "spam@example.com"}, True,
                 id="policy-address-quoted"),
    pytest.param("sender: [boss@example.com]", {"sender": '"bo ss"@example.com'}, False,
                 id="quoted-blank-is-another-mailbox"),
    # An address without @ as Postfix rewrites it by default (swap_bangpath,
    # allow_percent_hack): example.com!ceo and ceo%example.com go to ceo@example.com.
    pytest.param("sender_domain: [example.com]", {"sender": "<example.com!ceo>"}, True,
                 id="sender-bang-path"),
    pytest.param("recipient: [ceo@example.com]", {"recipients": ("example.com!ceo",)}, True,
                 id="recipient-bang-path"),
    pytest.param("recipient: [b!ceo@example.com]", {"recipients": ("example.com!b!ceo",)},
                 True, id="bang-path-first-bang"),
    pytest.param("sender: [ceo@example.com]", {"sender": "<ceo%example.com>"}, True,
                 id="sender-percent-hack"),
    pytest.param("recipient_domain: [example.com]", {"recipients": ("a%b%example.com",)},
                 True, id="percent-hack-last-percent"),
    pytest.param("sender_domain: [example.com]", {"sender": '"example.com!ceo"@evil.test'},
                 False, id="quoted-bang-is-no-path"),
    pytest.param("sender_domain: [example.com]", {"sender": "ceo%example.com@evil.test"},
                 False, id="percent-with-at-kept"),
    pytest.param("sender: ['<>']", {"sender": "<@relay.test:>"}, False,
                 id="source-route-of-nothing-is-no-null-sender"),
    pytest.param("sender_domain: [ceo]", {"sender": "<ceo>"}, False,
                 id="bare-local-part-has-no-domain"),
    pytest.param("sender: [a@example.com]", {"sender": '"a@evil.test"@example.com'}, False,
                 id="quoted-at-is-another-mailbox"),
    # client address: IPv4, IPv6, mapped, unknown
    pytest.param("client_ip: [198.51.100.0/24]", {}, True, id="ip-v4-in"),
    pytest.param("client_ip: [198.51.101.0/24]", {}, False, id="ip-v4-out"),
    pytest.param("client_ip: [198.51.100.7]", {}, True, id="ip-single-host"),
    pytest.param(
        "client_ip: ['2001:db8::/32']", {"client_ip": "2001:db8:1::5"}, True, id="ip-v6-in"
    ),
    pytest.param(
        "client_ip: ['2001:db8::/32']", {"client_ip": "IPv6:2001:db8::1"}, True, id="ip-postfix-v6"
    ),
    pytest.param(
        "client_ip: [198.51.100.0/24]",
        {"client_ip": "::ffff:198.51.100.9"},
        True,
        id="ip-v4-mapped",
    ),
    pytest.param(
        "client_ip: ['2001:db8::/32']", {"client_ip": "[IPv6:2001:db8::1]"}, True,
        id="ip-postfix-v6-bracketed",
    ),
    # a range written IPv4-mapped is the IPv4 range client addresses are compared in
    pytest.param(
        "client_ip: ['::ffff:192.0.2.0/120']", {"client_ip": "192.0.2.5"}, True,
        id="ip-mapped-range",
    ),
    pytest.param(
        "client_ip: ['::ffff:192.0.2.0/120']", {"client_ip": "::ffff:192.0.2.5"}, True,
        id="ip-mapped-range-mapped-client",
    ),
    pytest.param(
        "client_ip: ['::ffff:192.0.2.0/120']", {"client_ip": "192.0.3.5"}, False,
        id="ip-mapped-range-out",
    ),
    pytest.param(
        "client_ip: ['::ffff:0:0/96']", {"client_ip": "203.0.113.1"}, True, id="ip-mapped-all"
    ),
    pytest.param("client_ip: [0.0.0.0/0]", {"client_ip": None}, False, id="ip-missing"),
    pytest.param("client_ip: [0.0.0.0/0]", {"client_ip": "unknown"}, False, id="ip-unparsable"),
    # names: globs, case-insensitive
    pytest.param("client_name: ['*.ELSEWHERE.test']", {}, True, id="client-name-glob"),
    pytest.param("client_name: ['*.example.com']", {}, False, id="client-name-other"),
    pytest.param("client_name: ['*']", {"client_name": None}, False, id="client-name-missing"),
    pytest.param("helo: ['mail.?lsewhere.test']", {}, True, id="helo-question-mark"),
    pytest.param("helo: ['[!m]ail.*']", {}, False, id="helo-negated-class"),
    pytest.param("helo: ['*.evil.test']", {"helo": "mx.evil.test."}, True, id="helo-trailing-dot"),
    pytest.param("helo: ['*.xn--bcher-kva.example']", {"helo": "mx.bücher.example"}, True,
                 id="helo-idn"),
    pytest.param("client_name: ['*.evil.test']", {"client_name": "mx.Evil.Test."}, True,
                 id="client-name-trailing-dot"),
    # authentication
    pytest.param("authenticated: true", {"auth_user": "dave"}, True, id="authenticated"),
    pytest.param("authenticated: true", {}, False, id="not-authenticated"),
    pytest.param("authenticated: false", {}, True, id="authenticated-false"),
    pytest.param("auth_user: [Dave]", {"auth_user": "dave"}, True, id="auth-user"),
    pytest.param("auth_user: [dave]", {}, False, id="auth-user-none"),
    # composed (NFC), as the docs say of user lists: a client may send a login decomposed
    pytest.param("auth_user: [J\u00d6RG]", {"auth_user": "jo\u0308rg"}, True,
                 id="auth-user-decomposed"),
    pytest.param("auth_user: [jo\u0308rg]", {"auth_user": "J\u00d6RG"}, True,
                 id="auth-user-decomposed-in-rule"),
    # sizes
    pytest.param("size_over: 999", {}, True, id="size-over"),
    pytest.param("size_over: 1000", {}, False, id="size-equal"),
    pytest.param("size_over: 1KB", {"size": 1025}, True, id="size-units"),
    # headers and subject: RE2, searched, case-sensitive unless (?i)
    pytest.param(
        "header: {X-Spam-Flag: '^YES$'}", {"headers": (("x-spam-flag", "YES"),)}, True, id="header"
    ),
    pytest.param(
        "header: {X-Spam-Flag: '^YES$'}",
        {"headers": (("X-Spam-Flag", "yes"),)},
        False,
        id="header-case",
    ),
    pytest.param(
        "header: {X-A: a, X-B: b}", {"headers": (("X-A", "a"),)}, False, id="header-all-entries"
    ),
    pytest.param(
        "header: {X-A: a}", {"headers": (("X-A", "x"), ("X-A", "a"))}, True, id="header-any-value"
    ),
    pytest.param("subject: '(?i)^hello'", {}, True, id="subject-insensitive"),
    pytest.param("subject: '^$'", {"subject": None}, True, id="subject-missing-is-empty"),
    pytest.param("body: 'AKIA[0-9A-Z]{16}'", {"text": "key AKIAIOSFODNN7EXAMPLE"}, True, id="body"),
    pytest.param("body: 'AKIA[0-9A-Z]{16}'", {"text": "akiaiosfodnn7example"}, False, id="body-no"),
    # structure facts
    pytest.param("has_html: true", {"parts": (html_part(1),)}, True, id="has-html"),
    pytest.param("has_html: false", {"parts": (html_part(1),)}, False, id="has-html-false"),
    pytest.param("duplicate: true", {"duplicate": True}, True, id="duplicate"),
    pytest.param(
        "flag: [too_deep, malformed]", {"flags": frozenset({"malformed"})}, True, id="flag"
    ),
    pytest.param("flag: [malformed]", {"flags": frozenset({"empty_body"})}, False, id="flag-other"),
    # attachments: every sub-condition on the same part
    pytest.param("attachment: {filename: ['*.exe']}", {"parts": (EXE,)}, True, id="att-name-case"),
    pytest.param("attachment: {filename: ['*.exe']}", {"parts": (PDF,)}, False, id="att-name-no"),
    pytest.param("attachment: {filename: ['*']}", {"parts": (NAMELESS,)}, False, id="att-nameless"),
    pytest.param("attachment: {filename: ['rechnüng*']}", {"parts": (DECOMPOSED,)}, True,
                 id="att-name-decomposed"),
    pytest.param("attachment: {filename: ['rechnu\u0308ng*']}", {"parts": (DECOMPOSED,)}, True,
                 id="att-glob-decomposed"),
    pytest.param("attachment: {}", {"parts": (NAMELESS,)}, True, id="att-any"),
    pytest.param("attachment: {}", {}, False, id="att-none"),
    pytest.param(
        "attachment: {content_type: ['application/*']}", {"parts": (PDF,)}, True, id="att-type-glob"
    ),
    pytest.param(
        "attachment: {detected_type: [application/x-dosexec]}",
        {"parts": (EXE,)},
        True,
        id="att-magic",
    ),
    pytest.param("attachment: {size_over: 1000}", {"parts": (PDF,)}, False, id="att-size-small"),
    pytest.param(
        "attachment: {filename: ['*.pdf'], size_over: 1000}",
        {"parts": (PDF, EXE)},
        False,
        id="att-same-part",
    ),
    # nesting
    pytest.param("any: [{sender: x@y.test}, {has_html: false}]", {}, True, id="any"),
    pytest.param("any: [{sender: x@y.test}, {has_html: true}]", {}, False, id="any-none"),
    pytest.param("all: [{has_html: false}, {size_over: 1}]", {}, True, id="all"),
    pytest.param("not: {sender_domain: [example.com]}", {}, True, id="not"),
    pytest.param("not: {not: {size_over: 1}}", {}, True, id="not-not"),
    pytest.param("sender_domain: [elsewhere.test]\nsize_over: 5000", {}, False, id="and"),
]


@pytest.mark.parametrize(("when", "kwargs", "expected"), CASES)
def test_condition(when: str, kwargs: dict[str, Any], expected: bool) -> None:
    assert matches(when, **kwargs) is expected


SELECTION = [
    pytest.param("attachment: {filename: ['*.exe', '*.pdf']}", {1, 2}, id="both"),
    # A matched branch not about attachments selects them all, as such a rule does.
    pytest.param(
        "any: [{attachment: {filename: ['*.exe']}}, {size_over: 1}]", {1, 2}, id="any-with-all"
    ),
    pytest.param(
        "any: [{attachment: {filename: ['*.zip']}}, {size_over: 1}]",
        {1, 2},
        id="any-other-branch-only",
    ),
    pytest.param(
        "any: [{attachment: {filename: ['*.exe']}}, {size_over: 5000}]", {1}, id="any-collects"
    ),
    pytest.param(
        "any: [{attachment: {filename: ['*.exe']}}, {attachment: {filename: ['*.pdf']}}]",
        {1, 2},
        id="any-unites",
    ),
    # all: what every attachment condition selected, not what any one did.
    pytest.param(
        "all: [{attachment: {filename: ['*.exe', '*.pdf']}}, {attachment: {size_over: 1000}}]",
        {1},
        id="all-intersects",
    ),
    pytest.param(
        "all: [{attachment: {filename: ['*.exe']}}, {attachment: {filename: ['*.pdf']}}]",
        set(),
        id="all-matches-with-none-in-common",
    ),
    pytest.param(
        "attachment: {filename: ['*.pdf']}\nsize_over: 1", {2}, id="and-with-other-condition"
    ),
    pytest.param("not: {attachment: {filename: ['*.zip']}}", {1, 2}, id="not-selects-all"),
    pytest.param("size_over: 1", {1, 2}, id="no-attachment-condition"),
]


@pytest.mark.parametrize(("when", "selected"), SELECTION)
def test_attachments_selected(when: str, selected: set[int]) -> None:
    condition = rule_policy(when).enforced_rules[0].when
    found = condition.match(MatchInput.of(facts(parts=(EXE, PDF))))
    assert found == frozenset(selected)


@pytest.mark.parametrize(
    ("given", "address"),
    [("192.0.2.7", "192.0.2.7"), ("[192.0.2.7]", "192.0.2.7"),
     ("IPv6:2001:db8::1", "2001:db8::1"), ("[IPv6:2001:db8::1]", "2001:db8::1"),
     ("[IPv6:::ffff:192.0.2.1]", "192.0.2.1"), ("unknown", None), ("", None), (None, None)],
)
def test_client_ip_has_one_form_for_rules_and_audit(given: str | None, address: str | None) -> None:
    found = client_ip(given)
    assert (None if found is None else str(found)) == address


def test_a_rule_looks_at_each_recipient_domain_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # A thousand recipients at one deep domain: each rule walked its labels a thousand
    # times (100 rules, 120 labels: 2.7 s of the milter's CPU).
    looked: list[object] = []
    contains = conditions.DomainSet.__contains__
    monkeypatch.setattr(conditions.DomainSet, "__contains__",
                        lambda self, domain: looked.append(domain) or contains(self, domain))
    deep = ".".join(["a"] * 120) + ".corp.example"
    recipients = (*(f"user{i}@{deep}" for i in range(1000)), "b@x.d.example")
    condition = rule_policy("recipient_domain: ['.d.example']").enforced_rules[0].when
    assert condition.match(MatchInput.of(facts(recipients=recipients))) is not None
    assert looked == [deep, "x.d.example"]


@pytest.mark.parametrize("condition", ["subject: [viagra, cialis]",
                                       "header: {X-Mailer: [a, b]}"])
def test_a_list_of_patterns_tells_how_to_write_either(condition: str) -> None:
    """Address, domain and glob conditions take lists; a list of patterns was "expected a
    string, got a sequence", which did not say how to match either."""
    text = (f"version: 1\nname: p\nrules:\n  - name: r\n    when: {{{condition}}}\n"
            "    then: reject\n")
    [issue] = check_policy_text("p.yaml", text)
    assert issue.message == ("rule 'r': expected an RE2 regular expression, got a list: a "
                             "pattern is one (write a|b for either), or give each its "
                             "condition under any:")


@pytest.mark.parametrize(("condition", "text"), [("subject: [SPAM]", "SPAM"),
                                               ("header: {X-Tag: [Phishing Alert]}",
                                                "Phishing Alert")])
def test_a_tag_in_brackets_unquoted_is_told_how_to_write_it_as_a_pattern(
    condition: str, text: str
) -> None:
    """Quoted as the list error suggested nothing else, '[SPAM]' is a class of one
    character: a Subject with an S in it would match."""
    [issue] = check_policy_text("p.yaml", f"version: 1\nname: p\nrules:\n  - name: r\n"
                                          f"    when: {{{condition}}}\n    then: reject\n")
    assert issue.message.endswith(
        f"got a list: YAML reads [{text}] unquoted as a list of {text}: write {text} for "
        f"that text, or '\\[{text}\\]' for [{text}] with its brackets")
    pattern = issue.message.split(", or ")[-1].split(" for ")[0]  # '\[SPAM\]', quoted
    policies = load_policy_set_from_sources([("p.yaml", f"version: 1\nname: p\nrules:\n"
        f"  - {{name: r, when: {{subject: {pattern}}}, then: reject}}\n")])
    for subject, action in ((f"[{text}] hi", "reject"), (f"{text[0]} hi", "accept")):
        message = f"Subject: {subject}\r\n\r\nhi\r\n".encode()
        assert evaluate_message(policies, message, Envelope()).action == action


@pytest.mark.parametrize(("condition", "column"), [("when: [subject: a, body: b]", 11),
                                                   ("when: {not: [subject: a]}", 17)])
def test_a_list_of_conditions_tells_all_and_any(condition: str, column: int) -> None:
    """It was "expected a mapping (condition), got a sequence", which did not say how to
    write several."""
    text = f"version: 1\nname: p\nrules:\n  - name: r\n    {condition}\n    then: reject\n"
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        f"p.yaml:5:{column}: rule 'r': expected a mapping (condition), got a sequence (a "
        "condition is one mapping, all its keys holding: for a list of conditions write "
        "all: [...] or any: [...])"]
