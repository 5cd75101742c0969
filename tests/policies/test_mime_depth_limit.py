"""max_mime_depth counts from the message's own body (depth 0); 0 is refused, saying why."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from postwarden_policies import (
    Accept,
    Envelope,
    Reject,
    Reply,
    check_policy_text,
    evaluate_message,
    policy_schema,
)
from postwarden_policies.loader import load_policy_set_from_sources
from postwarden_policies.policyset import PARSER_MAX_DEPTH, PARSER_MAX_PARTS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "policy-language.md"

HEAD = "From: a@x.test\r\nTo: b@y.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
TEXT = "Content-Type: text/plain\r\n\r\nhi\r\n"
SINGLE = HEAD + TEXT
WITH_FILE = (HEAD + 'Content-Type: multipart/mixed; boundary="o"\r\n\r\n--o\r\n' + TEXT
             + "--o\r\nContent-Type: application/pdf\r\n"
             "Content-Disposition: attachment; filename=a.pdf\r\n\r\nxx\r\n--o--\r\n")
ALTERNATIVE = (HEAD + 'Content-Type: multipart/mixed; boundary="o"\r\n\r\n--o\r\n'
               'Content-Type: multipart/alternative; boundary="i"\r\n\r\n--i\r\n' + TEXT
               + "--i\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--i--\r\n--o--\r\n")
FORWARDED = HEAD + "Content-Type: message/rfc822\r\n\r\n" + SINGLE
ENVELOPE = Envelope("a@x.test", ("b@y.test",))
MESSAGES = {"single": SINGLE, "with-file": WITH_FILE, "alternative": ALTERNATIVE,
            "forwarded": FORWARDED}


def _refused(limits: str) -> list[str]:
    policy_set = load_policy_set_from_sources([("p.yaml", f"version: 1\nname: p\n{limits}")])
    refused = []
    for name, raw in MESSAGES.items():
        verdict = evaluate_message(policy_set, raw.encode(), ENVELOPE)
        if verdict.decision != Accept():
            assert verdict.decision == Reject(Reply.TOO_MANY_PARTS.reply)
            refused.append(name)
    return refused


@pytest.mark.parametrize(("limits", "refused"), [
    ("limits: {max_mime_depth: 1}\n", ["alternative"]),
    ("limits: {max_mime_depth: 2}\n", []),
    # What the refusal of max_mime_depth: 0 points to: single-part messages only.
    ("limits: {max_mime_parts: 1}\n", ["with-file", "alternative", "forwarded"]),
])
def test_depth_counts_from_the_message_body(limits: str, refused: list[str]) -> None:
    assert _refused(limits) == refused


@pytest.mark.parametrize(("key", "would"), [
    ("max_mime_depth", "0 would refuse every message with parts (max_mime_parts: 1 takes "
                       "single-part messages only): leave the limit out for none"),
    ("max_mime_parts", "0 would refuse every message (one part is 1): leave the limit out "
                       "for none"),
    ("max_recipients", "0 would refuse every recipient: leave the limit out for none"),
])
def test_a_count_limit_of_zero_is_refused_saying_what_it_would_do(key: str, would: str) -> None:
    text = f"version: 1\nname: p\nlimits:\n  {key}: 0\n"
    column = len(f"  {key}: ") + 1  # at the 0
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        f"p.yaml:4:{column}: limits.{key}: {would}"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "name": "p", "limits": {key: 0}}, policy_schema())


def _nested(levels: int) -> str:
    """A message whose text part is ``levels`` multiparts deep."""
    body = TEXT
    for level in range(levels):
        body = (f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'
                f"{body}--b{level}--\r\n")
    return HEAD + body


def _wide(parts: int) -> str:
    """A multipart message of ``parts`` parts, itself included."""
    return (HEAD + 'Content-Type: multipart/mixed; boundary="o"\r\n\r\n'
            + f"--o\r\n{TEXT}" * (parts - 1) + "--o--\r\n")


@pytest.mark.parametrize(("key", "cap", "past_cap"), [
    ("max_mime_depth", PARSER_MAX_DEPTH, _nested(PARSER_MAX_DEPTH + 20)),
    ("max_mime_parts", PARSER_MAX_PARTS, _wide(PARSER_MAX_PARTS + 20)),
])
def test_a_limit_past_the_parsers_cap_is_the_cap_and_says_so(
    key: str, cap: int, past_cap: str
) -> None:
    # max_mime_depth: 150 refused a message 120 deep, and nothing said it would.
    policy_set = load_policy_set_from_sources(
        [("p.yaml", f"version: 1\nname: p\nlimits: {{{key}: {cap * 2}}}\n")])
    verdict = evaluate_message(policy_set, past_cap.encode(), ENVELOPE)
    assert verdict.rules == (f"limit:{key}",)
    said = f"The parser reads at most {cap}"
    assert said in policy_schema()["$defs"]["limits"]["properties"][key]["description"]
    row = next(line for line in DOCS.read_text().splitlines() if line.startswith(f"| `{key}`"))
    assert said in row
