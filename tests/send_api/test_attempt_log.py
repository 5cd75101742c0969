"""The send attempt's log line names the sender by its address alone."""

from __future__ import annotations

import logging

import pytest

from postwarden_admin_api.send.attempts import Attempt


@pytest.mark.parametrize(
    ("sender", "logged"),
    [
        pytest.param("App <App@Example.com>", "sender=App@example.com ", id="address-only"),
        # A secret pasted into the wrong field is no address: it is not logged.
        pytest.param("pw_df88_WccRvZqa@example.com>", "sender=- ", id="not-an-address"),
        pytest.param(["app@example.com"], "sender=- ", id="not-a-string"),
    ],
)
def test_the_sender_is_logged_as_its_address(
    caplog: pytest.LogCaptureFixture, sender: object, logged: str
) -> None:
    attempt = Attempt("k1")
    attempt.describe({"from": sender, "to": ["alice@example.org"]})
    with caplog.at_level(logging.INFO):
        attempt.log("refused", "sender_not_allowed")
    (line,) = [r.getMessage() for r in caplog.records]
    assert logged in line
    assert "WccRvZqa" not in line
