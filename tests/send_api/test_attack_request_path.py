"""Attacks on ``POST /api/v1/send-email``'s request path, against the real service."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import asyncpg
import pytest

from postwarden_admin_api import ratelimit
from postwarden_admin_api.ratelimit import RateLimiter

from .conftest import Client, body


async def test_a_recipient_list_of_duplicates_is_refused_before_it_is_written(
    client: Client, sender: dict[str, str]
) -> None:
    # One address 8000 times is one recipient, but every copy went into the To
    # header: seconds of CPU on the event loop (minutes at 300 000, 5 MB).
    listed = ["victim@example.org"] * 8000
    response = await client.post("/api/v1/send-email", headers=sender,
                                 json=body(to=listed, cc=listed[:3], reply_to=listed))
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "too_many_recipients"
    assert [(d["field"], d["code"]) for d in error["details"]] == [
        ("to", "too_many_recipients"), ("reply_to", "invalid_field"),
    ]


async def test_a_very_long_address_is_refused_before_it_is_searched(
    client: Client, sender: dict[str, str]
) -> None:
    # Looking for RFC 2047 words in this took time quadratic in its length, on the
    # event loop: 0.5 s for these 28 KB, so some 13 s for 140 KB (a "small" body).
    endless = "=?x?b?x" * 4000
    response = await client.post("/api/v1/send-email", headers=sender,
                                 json=body(to=[endless], cc=endless, reply_to=endless))
    assert response.status == 422
    details = (await response.json())["error"]["details"]
    too_long = "too long: an address is at most 254 characters, its display name at most 200"
    assert [(d["field"], d["message"]) for d in details] == [
        ("to[0]", too_long), ("cc", too_long), ("reply_to", too_long),  # cc: one string
    ]


async def test_an_executable_named_as_its_ntfs_data_stream_is_refused(
    client: Client, sender: dict[str, str]
) -> None:
    # NTFS saves "invoice.exe::$DATA" as invoice.exe; the content is no PE file, so
    # only the name can stop it.
    attachment = {"filename": "invoice.exe::$DATA", "content_type": "application/pdf",
                  "content": base64.b64encode(b"%PDF-1.4 not really").decode()}
    response = await client.post("/api/v1/send-email", headers=sender,
                                 json=body(attachments=[attachment]))
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "attachment_not_allowed"
    assert error["details"][0]["field"] == "attachments[0]"


_NAME = "\u00e9" * 200
_SLOW_HEADERS = {
    # Each took the email package 0.1 to 1.5 s to write, from 20 to 60 KiB of JSON:
    # far below the size that moves body work to a thread, so every other request
    # waited that long.
    "display-names": {"to": [f"{_NAME} <r{index}@example.org>" for index in range(50)]},
    "header-values": {"headers": {f"X-Note-{index}": "\u00e9 " * 440 for index in range(20)}},
    "file-names": {"attachments": [
        {"filename": f"{_NAME}{_NAME[:40]}{index}.txt", "content_type": "text/plain",
         "content": "aGk="} for index in range(20)]},
}


@pytest.mark.parametrize("changes", _SLOW_HEADERS.values(), ids=_SLOW_HEADERS.keys())
async def test_a_small_body_of_slow_headers_is_built_off_the_event_loop(
    client: Client, sender: dict[str, str], on_threads: list[str], changes: dict[str, Any],
) -> None:
    response = await client.post("/api/v1/send-email", headers=sender, json=body(**changes))
    assert response.status == 202, await response.text()
    assert "build_message" in on_threads
    on_threads.clear()
    plain = await client.post("/api/v1/send-email", headers=sender,
                              json=body(to=["J\u00f6rg M\u00fcller <j@example.org>"],
                                        headers={"X-Note": "\u00e9t\u00e9"}))
    assert plain.status == 202 and "build_message" not in on_threads  # short ones stay


async def test_buckets_remembered_as_full_are_bounded_and_the_rest_still_refused(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every client address group blocked for failed logins was remembered, and each
    # addition sifted all of them: 30 000 groups in a minute held the event loop 30 s.
    monkeypatch.setattr(ratelimit, "MAX_REMEMBERED_FULL", 3, raising=False)
    limiter = RateLimiter(pool, window_seconds=3600)  # no window ends during the test
    buckets = [f"auth-failures:attack-{uuid.uuid4().hex}" for _ in range(5)]
    for bucket in buckets:
        assert (await limiter.hit(bucket, 1)).allowed
        assert not (await limiter.hit(bucket, 1)).allowed
    remembered = [limiter.remembered_full(bucket, 1) is not None for bucket in buckets]
    assert remembered == [True, True, True, False, False]
    assert not (await limiter.hit(buckets[-1], 1)).allowed  # refused by its count
