"""helo and client_name globs are read as the names they match are: lower case, A-labels,
no trailing dot; a glob that cannot be read so is refused at its line."""

from __future__ import annotations

import pytest

from postwarden_policies import Envelope, check_policy_text, evaluate_message

from .policy_helpers import policy

MESSAGE = b"Subject: s\r\n\r\nx\r\n"


def _action(key: str, glob: str, name: str) -> str:
    rules = f'rules:\n  - name: r\n    when: {{{key}: ["{glob}"]}}\n    then: reject\n'
    envelope = Envelope(sender="a@b.test", recipients=("c@d.test",), **{key: name})
    return evaluate_message(policy(rules), MESSAGE, envelope).action.value


@pytest.mark.parametrize("key", ["helo", "client_name"])
@pytest.mark.parametrize(("glob", "name"), [
    ("*.bücher.example", "mx.bücher.example"),
    ("*.bücher.example", "mx.xn--bcher-kva.example"),
    ("*.xn--bcher-kva.example", "mx.bücher.example"),
    ("mx.evil.test.", "mx.evil.test"),
    ("mx.evil.test.", "MX.Evil.Test."),
    ("MX.*.TEST", "mx.evil.test"),
    ("*.BÜCHER.example", "mx.bücher.example"),
])
def test_glob_matches_every_spelling(key: str, glob: str, name: str) -> None:
    assert _action(key, glob, name) == "reject"


@pytest.mark.parametrize("key", ["helo", "client_name"])
def test_normalised_glob_still_misses_other_names(key: str) -> None:
    assert _action(key, "*.bücher.example", "mx.evil.test") == "accept"


def test_wildcard_inside_a_non_ascii_label_is_refused_at_its_line() -> None:
    text = (
        "version: 1\nname: p\nrules:\n  - name: r\n    when:\n      helo:\n"
        "        - mx.example\n        - '*.bü*cher.example'\n    then: reject\n"
    )
    (issue,) = check_policy_text("p.yaml", text)
    assert (issue.line, issue.column) == (8, 11)
    assert issue.message.startswith(
        "rule 'r': invalid internationalised host name glob '*.bü*cher.example': "
    )


@pytest.mark.parametrize(("glob", "helo"), [
    ("[192.0.2.1]", "[192.0.2.1]"),
    ("[IPv6:2001:db8::1]", "[ipv6:2001:DB8:0::1]"),
])
def test_address_literal_glob_matches_that_literal(glob: str, helo: str) -> None:
    assert _action("helo", glob, helo) == "reject"


@pytest.mark.parametrize(("glob", "helo"), [
    ("[192.0.2.1]", "1"),  # read as a character class, it matched any one of 0 1 2 9 .
    ("[IPv6:2001:db8::1]", "d"),
    ("[192.0.2.1]", "[192.0.2.10]"),
])
def test_address_literal_glob_misses_other_names(glob: str, helo: str) -> None:
    assert _action("helo", glob, helo) == "accept"


@pytest.mark.parametrize("name", ["unknown", "[192.0.2.7]"])
def test_client_without_verified_name_matches_no_client_name_glob(name: str) -> None:
    # As the milter reads it (Postfix's "unknown", libmilter's bracketed address), so
    # that a `tests:` case or `eval --client-name unknown` holds as production does.
    assert _action("client_name", "*", name) == "accept"
