"""Keys stored before their allowed senders were checked against their role (or their
names for hidden characters): listed with their problem, warned of at start-up and by
`keys list` by id, and no more able to send than before."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.keys import split_key
from postwarden_admin_api.settings import ServiceSettings
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer

from .test_cli import _cli, cli_env  # noqa: F401 - the fixture

SENDERS = ["app@example.com"]
# A row as written before the check: mint_key stores what it is given, unchecked.
STORED_WRONG = [
    (Role.OPERATOR, SENDERS, "only sender and admin keys send: an operator key takes none"),
    (Role.AUDITOR, SENDERS, "only sender and admin keys send: an auditor key takes none"),
    (Role.SENDER, [], "a sender key sends only as its allowed senders: give at least one"),
]


def _key_id(key: str) -> str:
    parts = split_key(key)
    assert parts is not None
    return parts[0]


async def _listed(client: TestClient[Any, Any], admin_key: str, key_id: str) -> Any:
    listed = await (await client.get("/api/v1/keys", headers=bearer(admin_key))).json()
    return next(k for k in listed["keys"] if k["key_id"] == key_id)


@pytest.mark.parametrize(("role", "senders", "message"), STORED_WRONG,
                         ids=[role.value for role, _, _ in STORED_WRONG])
async def test_a_key_whose_senders_its_role_does_not_take_is_listed_with_its_problem(  # noqa: PLR0917 - fixtures
    admin_client: TestClient[Any, Any], admin_key: str, mint_key: MintKey,
    role: Role, senders: list[str], message: str
) -> None:
    # Listed as any other key: an operator key seemed able to send as app@example.com.
    key_id = _key_id(await mint_key(role, allowed_senders=senders))
    shown = await _listed(admin_client, admin_key, key_id)
    assert shown["problems"] == [{"field": "allowed_senders", "message": message}]


async def test_a_key_named_with_a_hidden_character_is_listed_with_its_problem(
    admin_client: TestClient[Any, Any], admin_key: str, mint_key: MintKey
) -> None:
    # Named before names were checked: listed as any other, "ci\u202egol" shown "cilog".
    key_id = _key_id(await mint_key(Role.AUDITOR, name="ci\u202egol"))
    assert (await _listed(admin_client, admin_key, key_id))["problems"] == [
        {"field": "name", "message": "control, invisible and bidi characters are not allowed"}]


@pytest.mark.parametrize(("role", "senders"), [(Role.SENDER, SENDERS), (Role.ADMIN, SENDERS),
                                               (Role.ADMIN, []), (Role.OPERATOR, [])])
async def test_a_key_made_right_has_no_problem(
    admin_client: TestClient[Any, Any], admin_key: str, mint_key: MintKey,
    role: Role, senders: list[str]
) -> None:
    key_id = _key_id(await mint_key(role, allowed_senders=senders))
    assert (await _listed(admin_client, admin_key, key_id))["problems"] == []


async def test_the_role_keys_fixtures_keys_have_no_problem(
    admin_client: TestClient[Any, Any], admin_key: str, role_keys: dict[Role, str]
) -> None:
    """Its operator and auditor keys were made with allowed senders, which the API refuses
    (and lists a key stored so with): the tests ran on keys no one can make."""
    for key in role_keys.values():
        assert (await _listed(admin_client, admin_key, _key_id(key)))["problems"] == []


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.AUDITOR])
async def test_an_operator_or_auditor_key_with_allowed_senders_cannot_send(
    admin_client: TestClient[Any, Any], mint_key: MintKey, role: Role
) -> None:
    key = await mint_key(role, allowed_senders=SENDERS)
    response = await admin_client.post("/api/v1/send-email", headers=bearer(key), json={
        "from": SENDERS[0], "to": "b@example.org", "subject": "s", "text": "t"})
    assert response.status == 403, await response.text()
    assert (await response.json())["error"]["code"] == "forbidden"


async def test_start_up_warns_of_each_working_key_with_a_problem_by_its_id(
    aiohttp_client: AiohttpClient, admin_settings: ServiceSettings, mint_key: MintKey,
    caplog: pytest.LogCaptureFixture
) -> None:
    key = await mint_key(Role.OPERATOR, allowed_senders=SENDERS)
    revoked = await mint_key(Role.AUDITOR, allowed_senders=SENDERS)
    admin = await mint_key(Role.ADMIN)
    client = await aiohttp_client(create_app(admin_settings))
    response = await client.delete(f"/api/v1/keys/{_key_id(revoked)}", headers=bearer(admin))
    assert response.status == 200
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="postwarden_admin_api.keys"):
        await aiohttp_client(create_app(admin_settings))
    warnings = [r.getMessage() for r in caplog.records if r.name == "postwarden_admin_api.keys"]
    ours = [w for w in warnings if _key_id(key) in w]
    assert len(ours) == 1
    assert "operator" in ours[0] and "allowed_senders" in ours[0]
    assert not any(_key_id(revoked) in w for w in warnings)  # ended: nothing to do
    assert key.split("_", 2)[2] not in caplog.text


@pytest.mark.usefixtures("cli_env")
async def test_keys_list_warns_of_a_keys_problem_on_stderr(
    mint_key: MintKey, capsys: pytest.CaptureFixture[str]
) -> None:
    key_id = _key_id(await mint_key(Role.OPERATOR, allowed_senders=SENDERS))
    capsys.readouterr()
    assert await _cli(["keys", "list"]) == 0
    out, err = capsys.readouterr()
    assert f"warning: key {key_id}: allowed_senders: only sender and admin keys send" in err
    listed = [line for line in out.splitlines() if line.startswith(key_id)]
    assert len(listed) == 1 and "active" in listed[0]  # stdout as before, for scripts
