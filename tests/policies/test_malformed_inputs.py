"""Hostile and malformed messages get a verdict: never an exception, a hang or a
memory blow-up, through parsing, the example policies and the rewrite path.

The shapes below are the minimal forms of what a bounded fuzzer fed the parser
(deep nesting, boundaries that are prefixes of each other, CR-only line ends,
broken encodings, RFC 2231 pieces out of order, ...); the two regressions it
found have tests of their own at the end.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from postwarden_policies import (
    Envelope,
    HtmlOptions,
    RewritePlan,
    evaluate,
    load_policy_set,
    mimetree,
    parse_message,
    rewrite_body,
)
from postwarden_policies.rewrite import RewriteError
from tests.memory import peak_of

ENV = Envelope(sender="x@elsewhere.test", recipients=("alice@example.com",))
EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "policies" / "examples").glob("*.yaml"))
MIXED = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n"


def _deep(levels: int) -> bytes:
    head = b"Content-Type: multipart/mixed; boundary=%d\r\n\r\n--%d\r\n"
    return b"".join(head % (i, i) for i in range(levels))


HOSTILE = [
    pytest.param(_deep(300), id="deep-multipart-unclosed"),
    pytest.param(b"Content-Type: message/rfc822\r\n\r\n" * 300, id="rfc822-chain"),
    pytest.param(MIXED + b"--aa\r\n" * 50 + b"--a\r\n\r\nx\r\n--a--", id="prefix-boundaries"),
    pytest.param(
        b"Content-Type: multipart/mixed; boundary=a; boundary=aa\r\n\r\n--aa\r\n\r\n--a\r\n\r\n",
        id="two-boundaries-prefix",
    ),
    pytest.param(MIXED + b"--a\r\n--a--\r\npreamble?\r\n--a\r\n", id="delimiter-after-close"),
    pytest.param(
        b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n", id="empty-boundary"
    ),
    pytest.param(MIXED + b"\r--a" * 200 + b"\r--a--\r", id="cr-only-delimiters"),
    pytest.param(
        b"Content-Type: multipart/mixed; boundary=b\r\rpre\r--b\rContent-Type: text/html\r\r"
        b"<p onclick=x>hi\r--b--\r",
        id="cr-only-message",
    ),
    pytest.param(b"Subject: " + b"x" * 200_000 + b"\r\n\r\nbody", id="huge-header-line"),
    pytest.param(b"X: y\r\n" * 20_000 + b"\r\nbody", id="many-headers"),
    pytest.param(MIXED + b"--a\r\n\r\n" * 5_000, id="thousands-of-empty-parts"),
    pytest.param(
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b"====" * 500
        + b"A",
        id="base64-all-padding",
    ),
    pytest.param(
        b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + b"=\r" * 2_000 + b"=ZZ<script>",
        id="qp-soft-breaks-and-bad-escape",
    ),
    pytest.param(
        b"Content-Type: text/plain\r\n\r\n" + b"begin 644 a.exe\n" * 300 + b"M\x00\xff\nend\n",
        id="uuencode-begin-lines",
    ),
    pytest.param(
        b"Content-Type: application/octet-stream; "
        + b"".join(b"name*%d*=%%%02X; " % (i, i % 256) for i in range(2_000, 0, -1))
        + b"name*99999999999999999999=x\r\n\r\nMZ",
        id="rfc2231-pieces-reversed-and-huge",
    ),
    pytest.param(
        b"Content-Type: text/plain; charset=\"\x00utf-7\"\r\nSubject: \x00\xff\xfe=?\x00?B?AA?=\r\n"
        b"Content-Disposition: attachment; filename=\"=?x-bogus?Q?a=ZZ?=.exe\"\r\n\r\n+ADw-",
        id="nul-and-8bit-in-headers",
    ),
    pytest.param(b"Subject: " + b"=?utf-8?Q?a?= " * 5_000 + b"\r\n\r\n", id="encoded-words"),
    pytest.param(
        b"Content-Type: multipart/digest; boundary=b\r\n\r\n" + b"--b\r\n\r\n" * 300 + b"--b--",
        id="digest-of-empty-messages",
    ),
    pytest.param(
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n\r\n--b--\r\n",
        id="zero-length-part",
    ),
    pytest.param(b"\r" * 10_000, id="only-cr"),
    pytest.param(b"", id="nothing"),
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_a_hostile_message_gets_a_verdict(raw: bytes) -> None:
    facts = parse_message(raw, ENV)
    assert "parser_error" not in facts.flags
    list(facts.renderings)
    for path in EXAMPLES:
        verdict = evaluate(load_policy_set([path]), facts)
        assert "internal_error" not in verdict.flags
    plans = [
        RewritePlan(tuple((part.index, "test") for part in facts.attachments), None),
        RewritePlan((), HtmlOptions("strip", frozenset({"https"})), skip_signed=False),
    ]
    for plan in plans:
        try:
            rewrite_body(facts, plan)
        except RewriteError:
            pass  # refused after its own check: the engine holds the message


def test_a_from_header_too_costly_for_the_strict_parse_is_searched_and_flagged() -> None:
    # The email package's address parser took seconds on 10 KB of this shape (time
    # grows with length times tokens) and Postfix lets a 100 KB header through.
    costly = b'"a' * 1_000 + b" <ceo@example.com>"
    facts = parse_message(b"From: " + costly + b"\r\n\r\nhi\r\n", ENV)
    assert facts.from_address == "ceo@example.com"
    assert {"ambiguous_from", "malformed"} <= facts.flags
    # A long From of few tokens still goes through it.
    spaced = parse_message(b"From: " + b'"x@evil.test"' + b" " * 5_000 + b"<ceo@example.com>"
                           b"\r\n\r\nhi\r\n", ENV)
    assert spaced.from_address == "ceo@example.com" and "ambiguous_from" not in spaced.flags


def test_delimiter_lines_past_the_part_limit_are_not_all_kept() -> None:
    # A megabyte of delimiter lines made two hundred thousand ranges the parser
    # would never visit: 50 MB for a 1 MB message (1.5 GB for 25 MB).
    raw = MIXED + b"--a\r\n" * 200_000
    facts, peak = peak_of(lambda: parse_message(raw, ENV))
    assert peak < 4 * len(raw)
    assert len(facts.parts) == 1000
    assert facts.flags == {"too_many_parts"}  # the close delimiter is not looked for


def test_a_signature_is_still_judged_on_its_parts_at_the_part_limit() -> None:
    signed = (
        b'Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary=s\r\n\r\n'
        b"--s\r\nContent-Type: text/plain\r\n\r\nsigned\r\n"
        b"--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n"
        b"--s\r\nContent-Type: text/html\r\n\r\n<script>x</script>\r\n--s--\r\n"
    )
    # Three parts: no signature a reader honours, however few parts may be listed.
    for max_parts in (2, 3, 1000):
        facts = parse_message(signed, ENV, max_parts=max_parts)
        assert not any(part.in_signed for part in facts.parts)


def test_multiparts_nested_over_the_same_bytes_are_searched_within_a_bound() -> None:
    # Each multipart searches its own body for its delimiter lines, so a hundred
    # levels search the innermost text a hundred times; with boundaries that are
    # prefixes of its lines ("--bbb...") that took seconds a megabyte. Past 16
    # times the message (and a floor), nesting is not descended: too_deep.
    levels = b"".join(
        b"Content-Type: multipart/mixed; boundary=%s\r\n\r\n--%s\r\n" % (b"b" * n, b"b" * n)
        for n in range(1, 101)
    )
    raw = levels + b"Content-Type: text/plain\r\n\r\n" + (b"--" + b"b" * 101 + b"\r\n") * 20_000
    facts = parse_message(raw, ENV)
    assert "too_deep" in facts.flags
    verdict = evaluate(load_policy_set([p for p in EXAMPLES if p.name == "inbound-default.yaml"]),
                       facts)
    assert verdict.rules == ("limit:max_mime_depth",)
    # A deep message within the bound is read whole.
    small = parse_message(levels + b"Content-Type: text/plain\r\n\r\nhi\r\n", ENV)
    assert "too_deep" not in small.flags and small.parts[-1].depth == 100


# What may follow "--a" on its line; the last ones past _MISSES near-misses, where
# regular expressions search the rest.
_AFTER_DELIMITER = (b"", b"--", b" \t ", b"-- ", b"--\t", b"-", b"---", b"--x", b" x", b"x",
                    b"a", b"--a", b"\r", b"--\r", b" \r", b"-\r", b"--  x")


@pytest.mark.parametrize("misses", [0, 70])
@pytest.mark.parametrize("after", _AFTER_DELIMITER)
def test_a_delimiter_line_is_what_rfc_2046_allows(after: bytes, misses: int) -> None:
    """--a, -- for the close delimiter, blanks to the line end (or the end), nothing
    else: read by hand where one is found, by regular expression past many near-misses,
    each as the regular expression the parser once matched every one with."""
    body = b"x--a!\r\n" * misses + b"--a\r\nfirst\r\n--a" + after + b"\r\nnext\r\n--a" + after
    expected = [(m.start() + (m.group(0)[:1] in b"\r\n"), m.group(1) is not None, m.end())
                for m in re.finditer(rb"(?:^|(?<=[\r\n]))--a(--)?[ \t]*(?=[\r\n]|\Z)", body)]
    assert list(mimetree._delimiter_lines(body, 0, len(body), b"a")) == expected
