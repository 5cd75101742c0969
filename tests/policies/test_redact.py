"""Secret redaction: a table of positives (with the context kept) and negatives."""

from __future__ import annotations

import pytest
import re2

from postwarden_policies.redact import _ANY_RULE, _RULES, names_a_secret, redact

CASES = [
    ("Authorization: Bearer abcdef123456.xyz", "Authorization: Bearer [REDACTED]"),
    ("authorization: basic dXNlcjpwYXNzd29yZA==", "authorization: basic [REDACTED]"),
    ("key pw_abc123_S3cr3tS3cr3tS3cr3t used", "key pw_abc123_[REDACTED] used"),
    ("sk-abcdefghijklmnopqrstuvwxyz123456", "sk-[REDACTED]"),
    ("sk-proj-abcdefghijklmnopqrstuv", "sk-proj-[REDACTED]"),
    ("slack xoxb-123456789012-abcdefgh", "slack xoxb-[REDACTED]"),
    ("xoxp-1-2-3-abcdefabcdef", "xoxp-[REDACTED]"),
    ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSF[REDACTED]"),
    ("id=ASIAY34FZKBOKMUTVV7A,", "id=ASIAY34F[REDACTED],"),
    ("ghp_" + "a" * 36, "ghp_[REDACTED]"),
    ("gho_" + "B1" * 18, "gho_[REDACTED]"),
    ("ghs_" + "c" * 36 + " end", "ghs_[REDACTED] end"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "github_pat_[REDACTED]"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature_x done", "jwt [REDACTED] done"),
    ("postgres://bob:hunter2@db.example/x", "postgres://bob:[REDACTED]@db.example/x"),
    ("smtp://:only-pass@host", "smtp://:[REDACTED]@host"),
    ("password=hunter2&x=1", "password=[REDACTED]&x=1"),
    ("PASSWD: 'a b c'", "PASSWD: [REDACTED]"),
    ('{"secret": "s e"}', '{"secret": [REDACTED]}'),
    ("token=abc", "token=[REDACTED]"),
    ("client_secret=xyz; next", "client_secret=[REDACTED]; next"),
    ("Token abcdefghijk", "Token [REDACTED]"),
    ("PWD=x9", "PWD=[REDACTED]"),
    ("api_key: k1 apikey=k2", "api_key: [REDACTED] apikey=[REDACTED]"),
    ("REFRESH_TOKEN=r1", "REFRESH_TOKEN=[REDACTED]"),
    ("ghu_" + "d" * 36 + " ghr_" + "e" * 36, "ghu_[REDACTED] ghr_[REDACTED]"),
    ("HTTPS://Bob:Pass@Host", "HTTPS://Bob:[REDACTED]@Host"),
    # A password's tail past an @ written unencoded, and a user name holding one.
    ("postgresql://u:p@ss-tail@db/x", "postgresql://u:[REDACTED]@db/x"),
    ("postgresql://u@corp:hunter2@db/x", "postgresql://u@corp:[REDACTED]@db/x"),
    ("postgres://u:p@h?sslmode=require a@b", "postgres://u:[REDACTED]@h?sslmode=require a@b"),
    # A secret's name that ends in (or holds) one of the words.
    ("postgresql://u@db/x?sslmode=verify-full&sslpassword=hunter2",
     "postgresql://u@db/x?sslmode=verify-full&sslpassword=[REDACTED]"),
    ("PGPASSWORD=hunter2 psql", "PGPASSWORD=[REDACTED] psql"),
    ("db_password: hunter2", "db_password: [REDACTED]"),
    ("secret_key: 0011aabb", "secret_key: [REDACTED]"),
    ("previous_secret_key=0011aabb", "previous_secret_key=[REDACTED]"),
    ('{"recipient_hash_key": "k e y"}', '{"recipient_hash_key": [REDACTED]}'),
    ("X_API_KEY=k3", "X_API_KEY=[REDACTED]"),
    ("X-Api-Key: k3y-value", "X-Api-Key: [REDACTED]"),
]

NEGATIVES = [
    "my password is nice",
    "skip sk-short",
    "https://example.com/a@b",
    "mailto:bob@example.com",
    "AKIA-not-a-key",
    "ghp_short",
    "pw_ab_x",
    "bearer of bad news",
    "the token was rejected",
    "eyJ alone",
    "https://host:8080/path@x",
    "the tokenizer: ready",
    "key_id=abc123",
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_redacts(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", NEGATIVES)
def test_leaves_ordinary_text(text: str) -> None:
    assert redact(text) == text


def test_several_secrets_in_one_line() -> None:
    line = "user=bob password=x1 key=pw_k1_abcdefghij url=https://u:p@h"
    assert (
        redact(line)
        == "user=bob password=[REDACTED] key=pw_k1_[REDACTED] url=https://u:[REDACTED]@h"
    )


def test_every_rule_is_an_re2_pattern() -> None:
    # RE2 matches in linear time; Python's engine took seconds on a 100 KB
    # sender-chosen Subject of "a-a-a-..." (bench/policy_eval.py times it).
    re2_pattern = type(re2.compile(""))
    assert all(type(pattern) is re2_pattern for pattern, _ in _RULES)


def test_a_long_run_of_scheme_characters_is_left_alone() -> None:
    text = "a-" * 50_000 + "b://u:p@h"
    assert redact(text) == "a-" * 50_000 + "b://u:[REDACTED]@h"


def _variants(text: str) -> set[str]:
    """``text`` in other cases, and with the letters RE2's case-insensitive rules fold
    from other code points: the long s and the Kelvin sign."""
    return {text, text.upper(), text.lower(), text.swapcase(), text.replace("s", "\u017f"),
            text.replace("S", "\u017f"), text.replace("k", "\u212a"),
            text.replace("K", "\u212a")}


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_the_keyword_check_lets_through_whatever_a_rule_matches(
    text: str, expected: str
) -> None:
    """Text without a keyword skips RE2; none may hold a secret a rule would find."""
    for variant in _variants(text):
        if _ANY_RULE.search(variant):
            assert redact(variant) != variant, variant


@pytest.mark.parametrize(("name", "secret"), [
    ("api_token", True), ("X-Api-Key", True), ("sslpassword", True), ("Password", True),
    ("reset-token", True), ("secret_key", True),
    ("order", False), ("key_id", False), ("token_count", False), ("tokens", False),
])
def test_names_a_secret(name: str, secret: bool) -> None:
    assert names_a_secret(name) is secret
