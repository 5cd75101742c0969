"""What an API user's review found unclear in the send API's answers."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest

from postwarden_admin_api.context import Role
from postwarden_admin_api.runtime_settings import RUNTIME
from tests.fixtures.adminapp import MintKey, bearer

from .conftest import Client, SetRuntime, body


async def _error(response: object) -> dict[str, object]:
    found: dict[str, object] = (await response.json())["error"]  # type: ignore[attr-defined]
    return found


@pytest.mark.parametrize(
    ("query", "hinted"),
    [
        pytest.param("since=2026-01-01T00:00:00+01:00", True, id="unencoded-plus"),
        pytest.param("since=2026-01-01 00:00:00+05:30", True, id="space-separator-too"),
        pytest.param("until=2026-01-01T00:00:00+0100", True, id="offset-without-colon"),
        pytest.param("since=yesterday", False, id="not-a-time"),
        pytest.param("since=2026-01-01T00:00:00+25:00", False, id="no-offset-either"),
    ],
)
async def test_a_plus_sent_unencoded_in_a_time_is_named(
    client: Client, sender: dict[str, str], query: str, hinted: bool
) -> None:
    response = await client.get(f"/api/v1/messages?{query}", headers=sender)
    assert response.status == 422
    [detail] = (await _error(response))["details"]  # type: ignore[misc]
    assert detail["message"].startswith("expected an ISO 8601 time")
    assert ("write + as %2B in a URL" in detail["message"]) is hinted


async def test_an_encoded_plus_in_a_time_is_read(client: Client, sender: dict[str, str]) -> None:
    response = await client.get("/api/v1/messages?since=2026-01-01T00:00:00%2B01:00",
                                headers=sender)
    assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    ("path", "query", "hinted"),
    [
        pytest.param("/api/v1/messages", "to=a+tag@example.org", True, id="search-to"),
        pytest.param("/api/v1/messages", "from=App <a+tag@example.com>", True, id="search-from"),
        pytest.param("/api/v1/suppressions", "address=a+tag@example.org", True, id="unsuppress"),
        pytest.param("/api/v1/messages", "to=a b@localhost", False, id="no-plus-fits"),
    ],
)
async def test_a_plus_sent_unencoded_in_an_address_is_named(
    client: Client, mint_key: MintKey, path: str, query: str, hinted: bool
) -> None:
    # "a tag@example.org" (the "+" read as a space) was only "expected local@domain":
    # nothing said the address had been sent right and read wrong.
    admin = bearer(await mint_key(Role.ADMIN))
    method = client.delete if path.endswith("suppressions") else client.get
    response = await method(f"{path}?{query}", headers=admin)
    assert response.status == 422
    [detail] = (await _error(response))["details"]  # type: ignore[misc]
    assert detail["message"].startswith("expected local@domain")
    assert ("write + as %2B in a URL" in detail["message"]) is hinted


@pytest.mark.parametrize(
    "several",
    [
        pytest.param("a@example.org, b@example.org", id="comma"),
        pytest.param("a@example.org;b@example.org", id="semicolon"),
        pytest.param("A <a@example.org>, B <b@example.org>", id="name-addr"),
    ],
)
async def test_several_addresses_in_one_string_are_told_to_be_a_list(
    client: Client, sender: dict[str, str], several: str
) -> None:
    response = await client.post("/api/v1/send-email", headers=sender,
                                 json=body(to=several, cc=[several]))
    assert response.status == 422
    details = (await _error(response))["details"]
    assert [(d["field"], d["message"]) for d in details] == [  # type: ignore[attr-defined]
        ("to", "one address per string: give a list"),  # as sent: a lone string
        ("cc[0]", "one address per string: give a list"),
    ]


async def test_several_addresses_as_the_sender_are_one_too_many(
    client: Client, sender: dict[str, str]
) -> None:
    response = await client.post("/api/v1/send-email", headers=sender,
                                 json=body(**{"from": "app@example.com, b@example.com"}))
    [detail] = (await _error(response))["details"]  # type: ignore[misc]
    assert (detail["field"], detail["message"]) == ("from", "one address per string")


@pytest.fixture
async def limited(
    client: Client, set_runtime: SetRuntime, mint_key: MintKey
) -> AsyncIterator[dict[str, str]]:
    """A fresh sender key (its counters at 0); the sending limits put back afterwards."""
    yield bearer(await mint_key(Role.SENDER, ["app@example.com"]))
    await set_runtime(outbound_per_recipient_per_day=None, outbound_per_key_per_day=None)
    client.app[RUNTIME].invalidate()


@pytest.mark.parametrize(
    ("setting", "same_recipient", "code", "kind"),
    [
        pytest.param("outbound_per_key_per_minute", False, "rate_limited", "send_per_minute",
                     id="per-key-per-minute"),
        pytest.param("outbound_per_recipient_per_day", True, "recipient_rate_limited",
                     "recipient_per_day", id="per-recipient-per-day"),
        pytest.param("outbound_per_key_per_day", False, "daily_quota_exceeded", "send_per_day",
                     id="per-key-per-day"),
    ],
)
async def test_each_sending_limit_names_its_kind(  # noqa: PLR0917 - fixtures and a table
    client: Client, limited: dict[str, str], set_runtime: SetRuntime,
    setting: str, same_recipient: bool, code: str, kind: str,
) -> None:
    """``rate_limited`` is also the per-key request limit's code (kind ``key``): the
    kind tells an app which limit it met."""
    await set_runtime(**{setting: 1})
    client.app[RUNTIME].invalidate()
    first = body()
    assert (await client.post("/api/v1/send-email", json=first, headers=limited)).status == 202
    again = await client.post("/api/v1/send-email", headers=limited,
                              json=first if same_recipient else body())
    assert again.status == 429
    error = await _error(again)
    assert error["code"] == code
    assert [(d["kind"], d["limit"]) for d in error["details"]] == [(kind, 1)]
    assert int(again.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        pytest.param("X Bad", '"X Bad"', id="space"),
        pytest.param("X-Ok\r\nBcc", '"X-Ok\\r\\nBcc"', id="crlf-escaped"),
        pytest.param("X-" + "y" * 100, f'"X-{"y" * 78}"', id="long-cut-short"),
    ],
)
async def test_an_invalid_header_name_is_named(
    client: Client, sender: dict[str, str], name: str, shown: str
) -> None:
    response = await client.post("/api/v1/send-email", headers=sender,
                                 json=body(headers={"X-Good": "1", name: "v"}))
    assert response.status == 422
    [detail] = (await _error(response))["details"]  # type: ignore[misc]
    assert (detail["field"], detail["code"]) == ("headers", "invalid_header")
    assert detail["message"] == f"not a valid header name: {shown}"


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("text/plain", id="text-plain"),
        pytest.param("application/x-www-form-urlencoded", id="curl-d-default"),
        pytest.param(None, id="none"),
    ],
)
async def test_a_body_not_declared_json_is_a_415(
    client: Client, sender: dict[str, str], content_type: str | None
) -> None:
    headers = {**sender} if content_type is None else {**sender, "Content-Type": content_type}
    response = await client.post("/api/v1/send-email", data=json.dumps(body()).encode(),
                                 headers=headers)
    assert response.status == 415
    error = await _error(response)
    assert error["code"] == "unsupported_media_type"
    assert "application/json" in error["message"]  # type: ignore[operator]


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/json; charset=utf-8", id="charset"),
        pytest.param("Application/JSON", id="upper-case"),
        pytest.param("application/vnd.example+json", id="plus-json"),
    ],
)
async def test_a_body_declared_json_is_read(
    client: Client, sender: dict[str, str], content_type: str
) -> None:
    response = await client.post("/api/v1/send-email", data=json.dumps(body()).encode(),
                                 headers={**sender, "Content-Type": content_type})
    assert response.status == 202, await response.text()


async def test_suppressions_after_is_compared_as_a_parsed_address(
    client: Client, mint_key: MintKey
) -> None:
    """``after`` as an address is written (upper case, the domain's U-label) starts the
    page after that address, as listed (lower case, the A-label)."""
    operator = bearer(await mint_key(Role.OPERATOR))
    domain = f"{uuid.uuid4().hex[:8]}-bücher.example"
    stored = []
    for local in ("alice", "bob"):
        added = await client.post("/api/v1/suppressions", json={"address": f"{local}@{domain}"},
                                  headers=operator)
        assert added.status == 201, await added.text()
        stored.append((await added.json())["address"])
    listed = await client.get("/api/v1/suppressions", headers=operator,
                              params={"after": f"ALICE@{domain.upper()}", "limit": "1000"})
    assert listed.status == 200, await listed.text()
    addresses = [s["address"] for s in (await listed.json())["suppressions"]]
    assert [a for a in addresses if a in stored] == stored[1:]


async def test_a_202_carries_the_headers_its_document_declares(
    client: Client, sender: dict[str, str]
) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    declared = document["paths"]["/api/v1/send-email"]["post"]["responses"]["202"]["headers"]
    assert {"Location", "Idempotent-Replayed"} <= set(declared)
    first = body()
    sent = await client.post("/api/v1/send-email", json=first,
                             headers={**sender, "Idempotency-Key": uuid.uuid4().hex})
    assert sent.status == 202
    required = {name for name, spec in declared.items() if spec["required"]}
    assert all(name in sent.headers for name in required)  # names are case-insensitive
    again = await client.post("/api/v1/send-email", json=first, headers={
        **sender, "Idempotency-Key": sent.request_info.headers["Idempotency-Key"]})
    assert all(name in again.headers for name in declared)
    assert again.headers["Location"] == sent.headers["Location"]
