"""The Idempotency-Key digest stays what earlier versions stored, and reading a body's
fields again changes nothing."""

from __future__ import annotations

from typing import Any

from postwarden_admin_api.send.idempotency import request_digest
from postwarden_admin_api.send.request_model import read_fields

# Nulls for fields left out, lone addresses, non-ASCII text, keys out of order.
SENT: dict[str, Any] = {
    "subject": "Grüße", "from": "App <app@example.com>", "to": "a@example.org", "cc": None,
    "reply_to": "r@example.org", "text": "Hallo, Welt", "headers": {"X-Order": "42"},
    "tags": ["order"], "metadata": {"n": 1, "ok": True}, "attachments": None,
}
# Computed by the version that read the body twice: the digests stored in
# send_idempotency must still match a retry after an upgrade.
STORED_DIGEST = "d94ef6e3e83e2e821765bfc9373988cfbfdaf3e2f730fd46213d15b1b4f8fcaa"


def test_the_digest_of_a_known_request_is_unchanged() -> None:
    assert request_digest(SENT).hex() == STORED_DIGEST
    assert request_digest(read_fields(SENT)).hex() == STORED_DIGEST


def test_reading_a_body_read_already_changes_nothing() -> None:
    once = read_fields(SENT)
    assert read_fields(once) == once
    assert once == {"subject": "Grüße", "from": "App <app@example.com>",
                    "to": ["a@example.org"], "reply_to": ["r@example.org"],
                    "text": "Hallo, Welt", "headers": {"X-Order": "42"}, "tags": ["order"],
                    "metadata": {"n": 1, "ok": True}}
