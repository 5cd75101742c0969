"""Standard Webhooks signatures: what we sign, a receiver verifies; tampering fails."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from postwarden_admin_api.webhooks.signing import (
    SignatureError,
    secret_key,
    sign_headers,
    verify,
)

from .support import generate_secret

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
BODY = b'{"type":"message.rejected","data":{}}'


def test_signature_matches_the_standard_construction() -> None:
    headers = sign_headers(SECRET, "msg_1", BODY, timestamp=1_700_000_000)
    expected = base64.b64encode(
        hmac.new(bytes(range(32)), b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    ).decode()
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": f"v1,{expected}",
    }


def test_verify_accepts_our_signature() -> None:
    headers = sign_headers(SECRET, "msg_2", BODY)
    verify(SECRET, headers, BODY)


@pytest.mark.parametrize(
    ("change", "body"),
    [
        pytest.param({}, BODY + b" ", id="body-changed"),
        pytest.param({"webhook-id": "msg_other"}, BODY, id="id-changed"),
        pytest.param({"webhook-timestamp": "1700000001"}, BODY, id="timestamp-changed"),
        pytest.param({"webhook-signature": "v2,abc"}, BODY, id="unknown-version"),
        pytest.param({"webhook-signature": ""}, BODY, id="no-signature"),
    ],
)
def test_tampering_is_detected(change: dict[str, str], body: bytes) -> None:
    headers = {**sign_headers(SECRET, "msg_3", BODY, timestamp=1_700_000_000), **change}
    with pytest.raises(SignatureError):
        verify(SECRET, headers, body, now=1_700_000_000)


def test_other_secret_fails() -> None:
    headers = sign_headers(SECRET, "msg_4", BODY)
    with pytest.raises(SignatureError):
        verify(generate_secret(), headers, BODY)


def test_old_timestamp_fails() -> None:
    headers = sign_headers(SECRET, "msg_5", BODY, timestamp=1_700_000_000)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, headers, BODY, now=1_700_000_000 + 301)


def test_rotating_receivers_may_list_several_signatures() -> None:
    headers = sign_headers(SECRET, "msg_6", BODY)
    headers["webhook-signature"] = "v1,bm90LWl0 " + headers["webhook-signature"]
    verify(SECRET, headers, BODY)


def test_no_secret_no_signature() -> None:
    assert "webhook-signature" not in sign_headers(None, "msg_7", BODY)


@pytest.mark.parametrize(
    "bad",
    ["secret", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode(),
     "whsec_" + base64.b64encode(bytes(65)).decode()],
)
def test_malformed_secrets_refused(bad: str) -> None:
    with pytest.raises(SignatureError):
        secret_key(bad)


def test_generated_secret_is_usable() -> None:
    assert len(secret_key(generate_secret())) == 32
