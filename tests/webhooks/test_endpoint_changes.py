"""What an endpoint sends, and where, is bound to its write-only values.

A receiver trusts a body signed with the endpoint's secret; a Slack URL (or a URL
with a token) and an api_call's headers let whoever holds them post. An operator
who never learned them must not make them carry a body of their choosing: a change
of kind or of the body template needs the URL, and the secret and headers when set,
given again. A refused request lists every problem at once, the URL's too."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from postwarden_admin_api.webhooks.signing import SignatureError, verify
from tests.admin_api.test_conflict_codes import error_code
from tests.fixtures.adminapp import MintKey, bearer

from .conftest import RECEIVER_NAME, Start
from .receiver import Receiver, wait_for
from .support import generate_secret, raise_reject

pytestmark = pytest.mark.postgres
Client = TestClient[Any, Any]
FORGED = {"order": "refund", "amount": 1000}


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: its receiver's port may be an earlier test's. Tests
    take it first, so it is dropped after the service stops."""
    return fresh_database_url


async def _create(client: Client, key: str, **body: Any) -> str:
    response = await client.post("/api/v1/webhooks", headers=bearer(key),
                                 json={"events": ["message.rejected"], **body})
    assert response.status == 201, await response.text()
    return f"/api/v1/webhooks/{(await response.json())['id']}"


async def _refused_fields(client: Client, key: str, hook: str, change: dict[str, Any]
                          ) -> list[str]:
    response = await client.patch(hook, headers=bearer(key), json=change)
    assert response.status == 422, await response.text()
    assert await error_code(response) == "validation_failed"
    return [d["field"] for d in (await response.json())["error"]["details"]]


@pytest.mark.parametrize("change", [
    pytest.param({"kind": "api_call", "body_template": FORGED}, id="to-api_call"),
    pytest.param({"kind": "slack"}, id="to-slack"),
])
async def test_a_new_kind_does_not_keep_the_signing_secret(  # noqa: PLR0917 - fixtures
    database_url: str, start: Start, admin_key: str, mint_key: MintKey, receiver: Receiver,
    change: dict[str, Any],
) -> None:
    client = await start()
    secret = generate_secret()
    url = f"https://{RECEIVER_NAME}:{receiver.port}/in"
    hook = await _create(client, admin_key, name="signed", url=url, secret=secret)
    operator = await mint_key(Role.OPERATOR)

    assert await _refused_fields(client, operator, hook, change) == ["url", "secret"]
    await raise_reject(database_url)
    assert await wait_for(lambda: len(receiver.requests) == 1)
    verify(secret, receiver.requests[0].headers, receiver.requests[0].body)
    assert json.loads(receiver.requests[0].body)["type"] == "message.rejected"

    theirs = generate_secret()  # given again: the receiver's owner is told the new one
    given = await client.patch(hook, headers=bearer(operator),
                               json={**change, "url": url, "secret": theirs})
    assert given.status == 200, await given.text()
    await raise_reject(database_url)
    assert await wait_for(lambda: len(receiver.requests) == 2)
    verify(theirs, receiver.requests[1].headers, receiver.requests[1].body)
    with pytest.raises(SignatureError, match="no valid signature"):
        verify(secret, receiver.requests[1].headers, receiver.requests[1].body)


async def test_a_slack_url_does_not_post_a_body_of_the_operators_choosing(
    database_url: str, start: Start, admin_key: str, mint_key: MintKey, receiver: Receiver,
) -> None:
    client = await start()
    slack = f"https://{RECEIVER_NAME}:{receiver.port}/services/T0001/B0002/XsEcReT"
    hook = await _create(client, admin_key, name="slack", kind="slack", url=slack)
    operator = await mint_key(Role.OPERATOR)

    change = {"kind": "api_call", "body_template": {"text": "<!channel> wire the money"}}
    assert await _refused_fields(client, operator, hook, change) == ["url"]
    await raise_reject(database_url)
    assert await wait_for(lambda: len(receiver.requests) == 1)
    assert json.loads(receiver.requests[0].body)["text"].startswith("postwarden: ")


async def test_a_new_body_template_needs_every_write_only_value_again(
    database_url: str, start: Start, admin_key: str, mint_key: MintKey,
) -> None:
    client = await start()
    template = {"event": "{{ type }}", "who": ["{{ data.sender }}", 1, True]}
    hook = await _create(client, admin_key, name="crm", kind="api_call",
                         url="https://api.example.com/in?token=t0k3n", secret=generate_secret(),
                         headers={"Authorization": "Bearer s3cr3t"}, body_template=template)
    operator = await mint_key(Role.OPERATOR)

    assert await _refused_fields(client, operator, hook, {"body_template": FORGED}) == [
        "url", "secret", "headers"]
    # true is no 1 (Python's == says it is); both change what is sent
    other = {"event": "{{ type }}", "who": ["{{ data.sender }}", True, 1]}
    assert await _refused_fields(client, operator, hook, {"body_template": other}) == [
        "url", "secret", "headers"]
    # The stored one given again counts too: the template is write-only, and an answer
    # telling it apart would confirm a guess of it (a routing_key it holds).
    same = {"who": ["{{ data.sender }}", 1, True], "event": "{{ type }}"}  # keys reordered
    assert await _refused_fields(client, operator, hook, {"body_template": same}) == [
        "url", "secret", "headers"]
    shown = await (await client.get(hook, headers=bearer(operator))).json()
    assert shown["body_template"] == shown["secret"] == {"is_set": True}

    kind_restated = await client.patch(hook, headers=bearer(operator), json={"kind": "api_call"})
    assert kind_restated.status == 200, await kind_restated.text()
    given = await client.patch(hook, headers=bearer(operator), json={
        "body_template": FORGED, "url": "https://api.example.com/other", "secret": None,
        "headers": None})
    assert given.status == 200, await given.text()
    shown = await given.json()
    assert shown["body_template"] == {"is_set": True}
    assert shown["secret"] == shown["headers"] == {"is_set": False}


async def test_a_refused_url_is_listed_with_every_other_problem(
    database_url: str, start: Start, admin_key: str,
) -> None:
    client = await start()
    hook = await _create(client, admin_key, name="listed", url="https://hooks.example.com/in",
                         secret=generate_secret())
    response = await client.patch(hook, headers=bearer(admin_key), json={
        "url": "https://10.0.0.1/", "name": "x y", "enabled": "yes"})
    assert response.status == 422, await response.text()
    assert await error_code(response) == "url_not_allowed"
    details = (await response.json())["error"]["details"]
    assert [d["field"] for d in details] == ["url", "name", "enabled"]
    assert details[0]["reason"] == "private"

    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "url": "http://hooks.example.com/", "events": ["no.such"]})
    assert created.status == 422, await created.text()
    assert await error_code(created) == "url_not_allowed"
    details = (await created.json())["error"]["details"]
    assert [d["field"] for d in details] == ["name", "url", "events", "secret"]
    assert details[1]["reason"] == "scheme_not_https"
