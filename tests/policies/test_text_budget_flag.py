"""Text past the body budget is not searched, and the parser says so (text_truncated)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from postwarden_policies import Envelope, evaluate_message, load_policy_set, parse_message
from postwarden_policies.textparts import TEXT_BUDGET

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"
HEAD = "From: a@elsewhere.test\r\nTo: b@example.com\r\nSubject: s\r\n"
KEY = "AKIAABCDEFGHIJKLMNOP"
LINE = "x" * 76 + "\r\n"
FILLER = LINE * (TEXT_BUDGET // len(LINE) + 1)  # a little past the budget


def _plain(text: str) -> bytes:
    return (HEAD + "\r\n" + text).encode()


def _two_parts(first: str, second: str, *, encoding: str = "7bit") -> bytes:
    if encoding == "base64":
        second = base64.encodebytes(second.encode()).decode().replace("\n", "\r\n")
    return (
        HEAD + 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\n" + first + "\r\n"
        f"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
        + second + "\r\n--b--\r\n"
    ).encode()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_plain(FILLER + KEY + "\r\n"), id="one-part-cut"),
        pytest.param(_two_parts(FILLER, KEY), id="second-part-after-the-budget"),
        pytest.param(_two_parts("x" * (TEXT_BUDGET - 10), KEY * 3, encoding="base64"),
                     id="encoded-part-cut"),
    ],
)
def test_text_the_budget_cuts_off_is_flagged(raw: bytes) -> None:
    facts = parse_message(raw, Envelope())
    assert "text_truncated" in facts.flags
    assert "malformed" not in facts.flags  # a long log pasted inline is well-formed mail
    assert len(facts.text) <= TEXT_BUDGET + 10  # the budget still bounds the text kept


def test_the_example_outbound_policy_holds_what_it_could_not_search() -> None:
    policy_set = load_policy_set([EXAMPLES / "outbound-submission.yaml"])
    envelope = Envelope("dave@example.com", ("c@elsewhere.test",), auth_user="dave")
    raw = _plain(FILLER + KEY + "\r\n")
    verdict = evaluate_message(policy_set, raw, envelope)
    assert verdict.action.value == "quarantine"
    assert verdict.rules == ("hold-unscanned-body",)
    # The same key within the budget is refused, as before.
    verdict = evaluate_message(policy_set, _plain(KEY + "\r\n" + FILLER), envelope)
    assert verdict.rules == ("block-credentials",)


def test_text_within_the_budget_is_not_flagged() -> None:
    facts = parse_message(_plain(LINE * 1000 + KEY + "\r\n"), Envelope())
    assert "text_truncated" not in facts.flags
    assert KEY in facts.text
