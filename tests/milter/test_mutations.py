"""Mutated corpus messages through the milter's callbacks: each gets the policy's
answer, never the fail action (a scratch run of this drove 200,000 through)."""

from __future__ import annotations

import random
from pathlib import Path

from postwarden_milter.reload import PolicyHolder
from postwarden_policies import load_policy_set
from tests.milter.conftest import Harness
from tests.policies.test_mutations import CORPUS, mutate

REPO = Path(__file__).resolve().parents[2]


def test_mutated_messages_never_meet_an_internal_error(harness: Harness) -> None:
    harness.use(policies=PolicyHolder(load_policy_set([REPO / "policies" / "examples"])))
    messages = [path.read_bytes() for path in CORPUS]
    rng = random.Random(7)
    answered = 0
    for _ in range(400):
        raw = mutate(rng, rng.choice(messages), messages)
        head, _, _ = raw.partition(b"\r\n\r\n")
        if not head.isascii():  # the harness splits header lines as text
            continue
        ctx = harness.connect()
        ctx.send(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        ctx._close()
        answered += 1
    assert answered > 250
    assert len(harness.audit.events) == answered
    errors = [sample for metric in harness.metrics.registry.collect()
              if metric.name == "postwarden_errors" for sample in metric.samples
              if sample.name == "postwarden_errors_total" and sample.value]
    assert not errors, errors
    actions = {event.action for event in harness.audit.events}
    assert actions <= {"accept", "reject", "quarantine", "tempfail", "discard"} and actions
