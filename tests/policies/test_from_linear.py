"""The From address is found in linear time: a 100 KB header (Postfix's default
header_size_limit lets one through) costs milliseconds, not the tens of seconds
the backtracking patterns took, and every header reads as it did before."""

from __future__ import annotations

import json
import random
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from postwarden_policies import (
    Envelope,
    entityheaders,
    evaluate_message,
    load_policy_set,
    load_policy_set_from_sources,
    parse_message,
)
from tests.memory import peak_of

ENV = Envelope(sender="x@elsewhere.test", recipients=("alice@example.com",))
CORPUS = Path(__file__).parent / "corpus"
EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "examples" / "inbound-default.yaml"

# The patterns as they were, quadratic on long runs: the reference for what each
# header must still read as.
_OLD_ADDR_SPEC = r"([^<>()\s\",;:\\@\[\]]+@[^<>()\s\",;:\\@\[\]]+)"
OLD_PATTERNS = {
    "_SIMPLE_FROM": re.compile(
        r"\s*(?:(?:\"[^\"\\]*\"|[^\"<>()\[\],;:@\\]*)\s*<" + _OLD_ADDR_SPEC + r">|"
        + _OLD_ADDR_SPEC + r")\s*"
    ),
    "_ANGLE_ADDR": re.compile(r"<\s*([^<>\s]+@[^<>\s]+)\s*>"),
    "_BARE_ADDR": re.compile(r"[^\s<>,;:\"()]+@[^\s<>,;:\"()]+"),
}


def _message(value: bytes) -> bytes:
    return b"From: " + value + b"\r\nTo: alice@example.com\r\nSubject: s\r\n\r\nhi\r\n"


# A value past four lines' worth (3,992 characters) that is not one of the common
# forms is not handed to the email package's parser (a '<a@a@...' of 100 KB took it a
# second): the plain search reads it, and it is flagged ambiguous_from.
@pytest.mark.parametrize(
    ("value", "expected", "flagged"),
    [
        (b"a" * 100_000, None, True),  # no '@' anywhere: each start scanned to the end
        (b"a" + b" " * 100_000 + b"b", None, True),
        # Not stripped as spaces are, and three repeats took it: cubic, 6 s for 2,000.
        ("\u00a0".encode() * 2_500 + b"x", None, False),
        (b"<" + b"a@" * 25_000, "a@" * 25_000, True),  # each '@' tried against each end
        (b"<" + b"a@" * 25_000 + b">", "a@" * 25_000, True),
        (b" " * 50_000 + b"Bob" + b" " * 50_000 + b"<bob@example.org>", "bob@example.org",
         False),
        (b"bob@example.org" + b" " * 100_000, "bob@example.org", False),
    ],
    ids=["no-at", "spaces", "nbsp", "angle-no-close", "angle-closed", "spaced-name",
         "trailing-spaces"],
)
def test_a_long_from_header_is_read(value: bytes, expected: str | None, flagged: bool) -> None:
    from_address, flags = _read_within_cpu_budget(_message(value))
    assert from_address == expected
    assert ("ambiguous_from" in flags) == flagged


# A bound that fails the test, not a measure: the backtracking patterns spent 12 to
# 30 s of CPU on these headers, the linear ones milliseconds. CPU time, not wall
# time, so a busy machine does not trip it.
CPU_SECONDS = 5
_READ_FROM = """
import json, sys
from postwarden_policies import Envelope, parse_message
facts = parse_message(sys.stdin.buffer.read(), Envelope(sender="x@elsewhere.test",
                                                          recipients=("alice@example.com",)))
print(json.dumps([facts.from_address, sorted(facts.flags)]))
"""


def _limit_cpu() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


def _read_within_cpu_budget(message: bytes) -> tuple[str | None, list[str]]:
    """The From address and flags ``parse_message`` finds, in a child process the
    kernel stops (SIGXCPU) past CPU_SECONDS."""
    done = subprocess.run([sys.executable, "-c", _READ_FROM], input=message,
                          capture_output=True, preexec_fn=_limit_cpu, check=False)
    assert done.returncode == 0, f"not read within {CPU_SECONDS} s of CPU ({done.returncode})"
    from_address, flags = json.loads(done.stdout)
    return from_address, flags


def test_a_long_quoted_from_address_is_compared_in_memory_of_its_size() -> None:
    # The policy test API and eval read messages Postfix did not bound: a From of 1 MB with a
    # quoted local part took 126 MB to compare (a backtracking point a character).
    raw = b'From: <"' + b"a" * 1_000_000 + b'@example.com>\r\nSubject: x\r\n\r\nhi\r\n'
    policy_set = load_policy_set_from_sources([("p.yaml", "version: 1\nname: p\nrules:\n"
        "  - name: r\n    when: {from_domain: [example.com]}\n    then: reject\n")])
    verdict, peak = peak_of(lambda: evaluate_message(policy_set, raw, ENV))
    assert verdict.rules == ("r",) and peak < 20 * len(raw)


def test_a_100kb_from_header_is_held_by_the_example_policy() -> None:
    policies = load_policy_set([str(EXAMPLE)])
    verdict = evaluate_message(policies, _message(b"<" + b"a@" * 25_000), ENV)
    assert verdict.rules == ("hold-broken-mime",)


def _corpus_from_values() -> list[bytes]:
    values = [
        line.split(b":", 1)[1].strip()
        for path in sorted(CORPUS.glob("*.eml"))
        for line in path.read_bytes().splitlines()
        if line.lower().startswith(b"from:")
    ]
    assert values  # the corpus has From headers to compare
    return values


# Forms the header tests use, and some that only these patterns decide.
_FORMS = [
    b"bob@EXAMPLE.org", b"bob@example.org (Bob Smith)", b'"x@evil.example" <real@example.org>',
    b"undisclosed", b"CEO <ceo@\r\n example.com>", b"< ceo @ example.com >",
    b"ceo@(a comment)example.com", b"<ceo@example.com(x)>",
    b"(IT <it@evil.test>) <ceo@example.com>", b'"IT <it@evil.test>" <ceo@example.com>',
    b"=?utf-8?q?IT_=3Cit@evil.test=3E?= <ceo@example.com>", b"<", b"Mallory <mallory@",
    b"a <b@", b':<"', b"Mallory <mallory@[evil.example>", b"alice@example.com)<bob@evil.test>",
    b"@@a <x@y>", b"<@a@b>", b"a@b@c", b"<a@b@c>", b"x, a@@b", b"caf\xc3\xa9 <\xe9@b.test>",
    b"Bob\xc2\xa0<bob@example.org>\xc2\xa0", b"  \"Bob\"  <bob@example.org>  ",
]


def _random_values(count: int) -> list[bytes]:
    alphabet = [*'a@ <>",;:()[]\\\t.', "\u00a0", "\x1c", "\u3000"]
    rnd = random.Random(2231)
    return [
        "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 12))).encode()
        for _ in range(count)
    ]


def test_every_header_reads_as_it_did_with_the_old_patterns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = _corpus_from_values() + _FORMS + _random_values(3000)
    new = [parse_message(_message(value), ENV) for value in values]
    for name, pattern in OLD_PATTERNS.items():
        monkeypatch.setattr(entityheaders, name, pattern)
    old = [parse_message(_message(value), ENV) for value in values]
    for value, before, after in zip(values, old, new, strict=True):
        assert (after.from_address, after.flags) == (before.from_address, before.flags), value
