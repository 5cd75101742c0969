"""Mutated corpus messages: every one gets a verdict, and what sanitizing leaves stays.

A bounded, seeded run of the mutations a scratch fuzzer ran by the million
(byte flips, MIME and HTML tokens inserted, cuts, splices from other
messages, truncation): parse and evaluate never raise, and a rewritten
message, delivered as apply_edits builds it, needs no second sanitizing.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from postwarden_policies import (
    Envelope,
    HtmlSanitized,
    ReplaceBody,
    apply_edits,
    evaluate,
    load_policy_set,
    parse_for,
)
from postwarden_policies.policyset import PolicySet

REPO = Path(__file__).resolve().parents[2]
CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.eml"))
MUTATIONS = 2500
TOKENS = (
    b"\r\n", b"\n", b"\r", b":", b";", b'"', b"=", b"<", b">", b"--", b" ", b"\t", b"\x00",
    b"\xff", b"\xc3", b"=?utf-8?b?", b"?=", b"=\r\n", b"boundary=", b"charset=", b"name=",
    b"filename*0*=", b"Content-Type: multipart/mixed; boundary=x\r\n", b"--x\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"begin 644 a.exe\n", b"<script>", b"<a href=", b"MZ",
)
ENVELOPE = Envelope(sender="a@example.org", recipients=("b@example.net",),
                    client_ip="192.0.2.1", client_name="mx.example.org", helo="mx.example.org")


def mutate(rng: random.Random, message: bytes, others: list[bytes]) -> bytes:
    data = bytearray(message)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(data) + 1)
        operation = rng.randrange(6)
        if operation == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif operation == 1:
            data[pos:pos] = rng.choice(TOKENS)
        elif operation == 2:
            del data[pos : pos + rng.randint(1, 200)]
        elif operation == 3 and data:
            start = rng.randrange(len(data))
            data[pos:pos] = data[start : start + rng.randint(1, 400)]
        elif operation == 4:
            other = rng.choice(others)
            start = rng.randrange(len(other) + 1)
            data[pos:pos] = other[start : start + rng.randint(1, 300)]
        elif operation == 5:
            del data[pos:]
    return bytes(data)


def verdict_of(policy_set: PolicySet, raw: bytes) -> tuple[tuple[object, ...], bytes]:
    facts = parse_for(policy_set, raw, ENVELOPE)
    verdict = evaluate(policy_set, facts)
    return verdict.changes, apply_edits(raw, verdict) if any(
        isinstance(edit, ReplaceBody) for edit in verdict.edits) else b""


@pytest.mark.parametrize("seed", range(4))
def test_mutated_messages_get_a_verdict_and_stay_sanitized(seed: int) -> None:
    policy_set = load_policy_set([REPO / "policies" / "examples"])
    messages = [path.read_bytes() for path in CORPUS]
    rng = random.Random(seed)
    rewritten = 0
    for _ in range(MUTATIONS):
        raw = mutate(rng, rng.choice(messages), messages)
        _, delivered = verdict_of(policy_set, raw)
        if delivered:
            rewritten += 1
            again, _ = verdict_of(policy_set, delivered)
            assert not [c for c in again if isinstance(c, HtmlSanitized)], raw
    assert rewritten > MUTATIONS // 50  # the run did reach the sanitizer
