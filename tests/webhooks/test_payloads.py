"""Payload kinds, safe template substitution, header rules, metadata-only events."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from postwarden_admin_api.webhooks.events import envelope, metadata
from postwarden_admin_api.webhooks.payloads import (
    MAX_BODY_BYTES,
    MAX_TEMPLATE_BYTES,
    BodyTooLarge,
    Endpoint,
    Kind,
    header_problems,
    render,
    substitute,
    template_problems,
)
from postwarden_admin_api.webhooks.signing import verify
from tests.webhooks.support import generate_secret

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
AUDIT_ROW = {
    "audit_event_id": "e1", "queue_id": "4Xyz1", "sender": "a@example.org",
    "recipients": ["b@example.net", "c@example.net"], "action": "reject",
    "rules": ["no-exe"], "subject": "secret plans", "body": "never", "client_address": "1.2.3.4",
    "changes": [{"kind": "attachment_stripped", "filename": "x.exe", "sha256": "ab",
                 "content": "must not leak"}],
}


def test_message_events_carry_metadata_only() -> None:
    data = metadata("message.rejected", AUDIT_ROW)
    assert set(data) == {"audit_event_id", "queue_id", "sender", "recipients", "action",
                         "rules", "changes"}
    assert data["changes"] == [{"kind": "attachment_stripped", "filename": "x.exe",
                                "sha256": "ab"}]


def test_a_metadata_value_under_a_secrets_name_is_redacted() -> None:
    # Redacted one string at a time, {"reset_token": "..."} went out whole: the name and
    # the value are not one text, as in reset_token=... (README: "secrets redacted").
    sent = {"id": 7, "status": "queued", "metadata": {
        "reset_token": "tq81Zr0a", "X-Api-Key": 4711, "order": "A-17", "note": "password=x1"}}
    data = metadata("send.queued", sent)
    assert data["metadata"] == {"reset_token": "[REDACTED]", "X-Api-Key": "[REDACTED]",
                                "order": "A-17", "note": "password=[REDACTED]"}


def test_a_list_or_object_under_a_secrets_name_is_redacted_whole() -> None:
    # Only a string or a number was: {"password": ["hunter2"]} or {"api_key": {"v": ...}}
    # went out as sent, though the README redacts the whole value of such a key.
    sent = {"id": 7, "metadata": {"password": ["hunter2"], "api_key": {"v": "k-81Zr0a"},
                                  "order": {"reset_token": ["tq81Zr0a"], "ref": ["A-17"]},
                                  "token": None}}
    data = metadata("send.queued", sent)
    assert data["metadata"] == {"password": "[REDACTED]", "api_key": "[REDACTED]",
                                "order": {"reset_token": "[REDACTED]", "ref": ["A-17"]},
                                "token": None}


def test_a_recipient_the_message_did_not_go_to_is_named() -> None:
    refused = {"kind": "recipient_refused", "recipient": "d@example.net",
               "reply": "452 4.5.3 Too many recipients", "more": 2}
    deleted = {"kind": "recipient_deleted", "recipient": "c@example.net"}
    data = metadata("message.accepted", {**AUDIT_ROW, "changes": [deleted, refused]})
    assert data["changes"] == [deleted, refused]


def test_envelope_shape() -> None:
    event = envelope("message.rejected", WHEN, AUDIT_ROW)
    assert event["type"] == "message.rejected"
    assert event["timestamp"] == "2026-01-02T03:04:05.000000Z"
    assert "subject" not in event["data"]


def test_webhook_kind_is_the_signed_envelope() -> None:
    secret = generate_secret()
    endpoint = Endpoint(1, "ops", "https://hooks.example.com/", Kind.WEBHOOK, secret)
    event = envelope("message.rejected", WHEN, AUDIT_ROW)
    request = render(endpoint, "evt-1", event)
    assert json.loads(request.body) == event
    verify(secret, request.headers, request.body)


def test_slack_text_is_escaped() -> None:
    endpoint = Endpoint(2, "chat", "https://hooks.slack.example/x", Kind.SLACK)
    event = envelope("message.rejected", WHEN, {**AUDIT_ROW, "sender": "<!channel>@x.org"})
    text = json.loads(render(endpoint, "evt-2", event).body)["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "4Xyz1" in text and "no-exe" in text


def test_a_slack_message_lists_ten_recipients_and_counts_the_rest() -> None:
    """A rejected message to a thousand recipients made a Slack text of 24,000
    characters: Slack splits such a text into several messages and cuts it at 40,000."""
    endpoint = Endpoint(2, "chat", "https://hooks.slack.example/x", Kind.SLACK)
    recipients = [f"user{n:04}@example.net" for n in range(1000)]
    event = envelope("message.rejected", WHEN, {**AUDIT_ROW, "recipients": recipients})
    text = json.loads(render(endpoint, "evt-2", event).body)["text"]
    assert len(text) < 1000
    assert "to user0000@example.net, " in text
    assert "user0009@example.net and 990 more · rules no-exe" in text


def test_api_call_template_and_headers() -> None:
    template = {"summary": "{{ type }} from {{ data.sender }}", "to": "{{data.recipients}}",
                "id": "{{ id }}", "missing": "{{ data.nothing }}", "fixed": [1, True]}
    endpoint = Endpoint(3, "crm", "https://api.example.com/", Kind.API_CALL, None,
                        {"Authorization": "Bearer t0ken"}, template)
    request = render(endpoint, "evt-3", envelope("message.rejected", WHEN, AUDIT_ROW))
    assert json.loads(request.body) == {
        "summary": "message.rejected from a@example.org",
        "to": ["b@example.net", "c@example.net"], "id": "evt-3", "missing": None,
        "fixed": [1, True],
    }
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.headers["webhook-id"] == "evt-3"


def test_api_call_keys_are_filled_in_as_text() -> None:
    """A key is a string of the template too: it was sent as written, "{{ type }}" and
    all, though every placeholder is filled in; and one naming no field passed the check."""
    template = {"{{ type }}": "{{ data.sender }}", "q-{{ data.queue_id }}": [1],
                "{{ data.recipients }}": True}
    assert template_problems(template) == []
    assert template_problems({"{{ data.__class__ }}": 1}) == [
        "unknown placeholder {{ data.__class__ }}"]
    endpoint = Endpoint(5, "crm", "https://api.example.com/", Kind.API_CALL, None, {},
                        template)
    request = render(endpoint, "evt-5", envelope("message.rejected", WHEN, AUDIT_ROW))
    assert json.loads(request.body) == {
        "message.rejected": "a@example.org", "q-4Xyz1": [1],
        "b@example.net, c@example.net": True}


@pytest.mark.parametrize("template", [
    {"routing_key": "R-1", "{{ data.metadata.ref }}": "{{ data.metadata.note }}"},
    {"{{ data.metadata.ref }}": "{{ data.metadata.note }}", "routing_key": "R-1"},
])
def test_a_key_filled_in_replaces_no_other_key(template: dict[str, Any]) -> None:
    """The client that sent the mail chose the metadata: a key filled in as "routing_key"
    replaced the template's own routing_key (PagerDuty's credential) with its note."""
    endpoint = Endpoint(6, "pd", "https://api.example.com/", Kind.API_CALL, None, {},
                        {**template, "{{ data.metadata.other }}": 1, "{{ data.id }}": 2})
    data = {"id": "m1", "metadata": {"ref": "routing_key", "note": "mine", "other": "m1"}}
    request = render(endpoint, "evt-6", envelope("send.delivered", WHEN, data))
    assert json.loads(request.body) == {"routing_key": "R-1", "m1": 1}


def test_api_call_text_writes_values_as_json_does() -> None:
    # A boolean in text was Python's True, an object its repr ({'paid': True, 'note': None}).
    template = {"text": "paid={{ data.metadata.paid }} attempts={{ data.attempts }} "
                        "meta={{ data.metadata }}"}
    endpoint = Endpoint(4, "shop", "https://api.example.com/", Kind.API_CALL, None, {},
                        template)
    data = {"id": "m1", "attempts": 2, "metadata": {"paid": True, "note": None}}
    request = render(endpoint, "evt-4", envelope("send.delivered", WHEN, data))
    assert json.loads(request.body) == {
        "text": 'paid=true attempts=2 meta={"paid": true, "note": null}'}


def _repeated(placeholder: str, times: int) -> dict[str, Any]:
    """A template naming the recipients ``times`` times, as a whole value or in text."""
    if placeholder == "whole":
        return {"to": ["{{data.recipients}}"] * times}
    return {"to": "{{data.recipients}}" * times}


@pytest.mark.parametrize("placeholder", ["whole", "interpolated"])
def test_a_template_naming_a_long_value_many_times_is_refused_before_the_body_is_built(
    placeholder: str,
) -> None:
    """Hundreds of copies of a 1,000-recipient list fit a 16 KiB template: a body of
    tens of MB, built in memory for every delivery."""
    context = {"data": {"recipients": [f"user{n}@example.net" for n in range(1000)]}}
    template = _repeated(placeholder, 650)
    assert template_problems(template) == []  # the template itself is acceptable
    with pytest.raises(BodyTooLarge):
        substitute(template, context)
    filled = substitute(_repeated(placeholder, 30), context)  # about 700 KB: delivered
    assert len(json.dumps(filled)) <= MAX_BODY_BYTES


@pytest.mark.parametrize("placeholder", ["whole", "interpolated"])
def test_the_body_limit_counts_bytes_not_characters(placeholder: str) -> None:
    """A value of multi-byte characters (a client's metadata in another script) was
    counted by characters: a body of 1.5 MB of UTF-8 passed the 1 MiB limit."""
    note = "\u20ac" * 100_000  # 100,000 characters, 300,000 bytes of UTF-8
    context = {"data": {"metadata": {"note": note}}}
    body = "{{data.metadata.note}}"
    template = {"notes": [body] * 5} if placeholder == "whole" else {"notes": body * 5}
    with pytest.raises(BodyTooLarge):
        substitute(template, context)
    filled = substitute({"notes": [body] * 3}, context)  # 900,000 bytes: delivered
    assert len(json.dumps(filled, ensure_ascii=False).encode()) <= MAX_BODY_BYTES


def test_substitution_only_looks_values_up() -> None:
    context = {"data": {"sender": "{{ data.secret }}", "secret": "x"}, "type": "t"}
    # a value that itself looks like a placeholder is not expanded again
    assert substitute("{{ data.sender }}!", context) == "{{ data.secret }}!"
    assert substitute("{{ __class__ }}", context) is None


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("text", "must be a JSON object"),
        ({"a": "{{ data.__class__ }}"}, "unknown placeholder"),
        ({"a": "{{ os.environ }}"}, "unknown placeholder"),
        ({"a": "x" * 20000}, "larger than"),
    ],
)
def test_bad_templates(template: object, problem: str) -> None:
    assert any(problem in p for p in template_problems(template))


def test_good_template() -> None:
    assert template_problems({"t": "{{ type }}", "s": ["{{ data.queue_id }}"]}) == []


def test_the_template_limit_counts_utf8_bytes() -> None:
    """A template in another script was measured with each character as its JSON
    escape (6 or 12 bytes): 12 KB of Cyrillic text was refused as over 16 KiB."""
    template = {"text": "\u041f\u0440\u0438\u0432\u0435\u0442 {{ data.sender }} " * 400}
    assert len(json.dumps(template, ensure_ascii=False).encode()) < MAX_TEMPLATE_BYTES
    assert template_problems(template) == []
    assert any("larger than" in p for p in template_problems({"text": "\u0416" * 8200}))


def test_a_template_names_the_metadata_keys_a_client_chose() -> None:
    """A send's metadata is the client's flat object, camelCase keys and all: a template
    could name only those in lower case (orderId was an unknown placeholder)."""
    template = {"order": "{{ data.metadata.orderId }}", "ref": "#{{ data.metadata.crm-ref }}",
                "n": "{{ data.metadata.2fa }}"}
    assert template_problems(template) == []
    data = {"id": "m1", "metadata": {"orderId": "A-17", "crm-ref": 42, "2fa": True}}
    endpoint = Endpoint(6, "shop", "https://api.example.com/", Kind.API_CALL, None, {},
                        template)
    request = render(endpoint, "evt-6", envelope("send.delivered", WHEN, data))
    assert json.loads(request.body) == {"order": "A-17", "ref": "#42", "n": True}


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"Host": "internal"}, "cannot be overridden"),
        ({"Content-Length": "1"}, "cannot be overridden"),
        ({"webhook-signature": "v1,x"}, "cannot be overridden"),
        # a receiver in PHP (or behind CGI, WSGI) reads these as webhook-id, content-type
        ({"Webhook_Id": "evt-1"}, "cannot be overridden"),
        ({"Content_Type": "text/plain"}, "cannot be overridden"),
        ({"X-A": "a\r\nInjected: 1"}, "control character"),
        ({"X-A": "a\x7fb"}, "control character"),  # aiohttp would refuse it at every delivery
        ({"Bad Name": "x"}, "not a valid token"),
        ({"X-A": 5}, "string value"),
        ({f"X-{i}": "v" for i in range(21)}, "at most"),
        # one name to HTTP: only the last was sent, the other dropped without a word
        ({"Authorization": "Bearer a", "authorization": "Bearer b"}, "given twice"),
    ],
)
def test_bad_headers(headers: dict[str, object], problem: str) -> None:
    assert any(problem in p for p in header_problems(headers))


def test_good_headers() -> None:
    assert header_problems({"Authorization": "Bearer x", "X-Team": "mail\tbox"}) == []
