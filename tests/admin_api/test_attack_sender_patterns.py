"""A sender key's allowed senders are addresses or ``*@domain``. A pattern that can
match no sender ("*@", "@", "a@b@c", "*@*") used to be stored as given: an admin who
meant "any sender" got a 201 and a key that sends nothing."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.keys import allowed_sender
from tests.fixtures.adminapp import bearer

MATCHING_NOTHING = ["*@", "@", "a@b@c", "*@*", "app @example.com",
                    # These were stored too, and matched no sender: no address can have
                    # such a domain or local part (the send API refuses one that does).
                    "*@localhost", "*@1.2.3.4", "*@example..com", "*@-example.com",
                    "a%b@example.com", '"app"@example.com', "<app@example.com>",
                    "app@example.com "]


@pytest.mark.parametrize("pattern", MATCHING_NOTHING)
async def test_a_pattern_that_matches_no_sender_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str, pattern: str
) -> None:
    response = await admin_client.post("/api/v1/keys", headers=bearer(admin_key), json={
        "role": "sender", "name": "app", "allowed_senders": ["app@example.com", pattern]})
    assert response.status == 422
    # The entry is named by its place, with why: "expected a list of addresses" said
    # neither which entry nor what is wrong with it.
    [detail] = (await response.json())["error"]["details"]
    assert detail["field"] == "allowed_senders[1]"
    assert detail["message"] != "expected a list of addresses"
    assert detail["message"] == _why(pattern)


def _why(pattern: str) -> str:
    try:
        allowed_sender(pattern)
    except ValueError as exc:
        return str(exc)
    raise AssertionError(f"{pattern!r} taken")


async def test_each_pattern_refused_is_named_with_why(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    response = await admin_client.post("/api/v1/keys", headers=bearer(admin_key), json={
        "role": "sender", "name": "app", "allowed_senders": ["*@localhost", 5]})
    assert (await response.json())["error"]["details"] == [
        {"field": "allowed_senders[0]",
         "message": "domain must be a fully qualified name (a dot between labels)"},
        {"field": "allowed_senders[1]", "message": "expected an address"}]


async def test_addresses_and_domains_are_stored_lower_cased(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    response = await admin_client.post("/api/v1/keys", headers=bearer(admin_key), json={
        "role": "sender", "name": "app",
        "allowed_senders": ["Billing@Example.COM", "*@Shop.Example", "a*b@example.org"]})
    assert response.status == 201
    assert (await response.json())["allowed_senders"] == [
        "billing@example.com", "*@shop.example", "a*b@example.org"]


@pytest.mark.parametrize("pattern", MATCHING_NOTHING)
async def test_the_setting_refuses_a_pattern_that_matches_no_sender_too(
    admin_client: TestClient[Any, Any], admin_key: str, pattern: str
) -> None:
    response = await admin_client.put("/api/v1/settings", headers=bearer(admin_key), json={
        "allowed_sender_addresses": ["*@example.com", pattern]})
    assert response.status == 422, await response.text()
    [detail] = (await response.json())["error"]["details"]
    assert detail["field"] == "allowed_sender_addresses"
    # Which entry, and why: the 422 said only "expected addresses such as ...".
    assert detail["message"] == (f"entry 1: {_why(pattern)} (expected addresses such as "
                                 "user@example.com or *@example.com)")


async def test_a_domain_written_in_dns_or_unicode_form_is_taken(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    response = await admin_client.post("/api/v1/keys", headers=bearer(admin_key), json={
        "role": "sender", "name": "app",
        "allowed_senders": ["*@example.com.", "*@B\u00fccher.example"]})
    assert response.status == 201, await response.text()
    assert (await response.json())["allowed_senders"] == [
        "*@example.com.", "*@b\u00fccher.example"]
