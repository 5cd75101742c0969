"""max_mime_depth counts from the message's own body (depth 0); 0 is refused, saying why."""

from __future__ import annotations

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
MESSAGES = {"single": SINGLE, "with-file": WITH_FILE, "alternative": ALTERNATIVE,
            "forwarded": FORWARDED}


def _refused(limits: str) -> list[str]:
    policy_set = load_policy_set_from_sources([("p.yaml", f"version: 1\nname: p\n{limits}")])
    envelope = Envelope("a@x.test", ("b@y.test",))
    refused = []
    for name, raw in MESSAGES.items():
        verdict = evaluate_message(policy_set, raw.encode(), envelope)
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
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [f"p.yaml:4:{column}: {would}"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "name": "p", "limits": {key: 0}}, policy_schema())
