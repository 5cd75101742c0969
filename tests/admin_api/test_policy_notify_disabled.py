"""A rule's ``notify`` naming a webhook endpoint that exists but is disabled (by an
operator, or by the service after its receiver answered 410 Gone) notified nobody, and
nothing said so, while a name no endpoint has was warned of. It is warned of in the
same places, with its own code, and so is disabling an endpoint an active rule
notifies. (The disable after a 410: tests/webhooks/test_gone.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.notify_targets import ENDPOINT_DISABLED, ENDPOINT_MISSING
from postwarden_admin_api.routes_policies import SCHEMAS
from postwarden_store import connect
from tests.fixtures.adminapp import bearer
from tests.webhooks.support import add_endpoint

from .test_policies import upload

Client = TestClient[Any, Any]
SOURCE = ("version: 1\nname: muted\nrules:\n  - name: tell-muted\n    when:\n"
          "      sender: [bad@evil.test]\n    then: {action: reject, notify: [muted-ops]}\n")


def _found(warnings: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    return [(w["code"], w["endpoint"], w["rules"]) for w in warnings]


API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_both_notify_warnings_are_declared_and_documented() -> None:
    declared = SCHEMAS["PolicyWarning"]["properties"]["code"]["enum"]
    doc = API_DOC.read_text(encoding="utf-8")
    for code in (ENDPOINT_MISSING, ENDPOINT_DISABLED):
        assert code in declared
        assert f'`{{"code": "{code}"' in " ".join(doc.split()), code


@pytest.mark.postgres
async def test_a_notify_naming_a_disabled_endpoint_is_warned_of(
    admin_client: Client, admin_key: str, database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = await connect(database_url)
    try:
        await add_endpoint(conn, "muted-ops", "https://hooks.example.com/m", [], None,
                           kind="slack", enabled=False)
        await add_endpoint(conn, "gone-ops", "https://hooks.example.com/g", [], None,
                           kind="slack", enabled=False)
        await conn.execute("UPDATE webhook_endpoints SET disabled_reason = $1 "
                           "WHERE name = 'gone-ops'", "the receiver answered 410 Gone")
    finally:
        await conn.close()
    expected = [("notify_endpoint_disabled", "muted-ops", ["muted/tell-muted"])]
    status, revision = await upload(admin_client, admin_key, SOURCE)
    assert status == 201, revision
    assert _found(revision["warnings"]) == expected
    assert "disabled by an operator" in revision["warnings"][0]["message"]
    assert "policy rules muted/tell-muted: notify names 'muted-ops'" in caplog.text

    activated = await admin_client.post(f"/api/v1/revisions/{revision['id']}/activate",
                                        headers=bearer(admin_key))
    assert activated.status == 200, await activated.text()
    assert _found((await activated.json())["warnings"]) == expected

    rule = {"name": "page-gone", "when": {"sender": "x@evil.test"},
            "then": {"action": "quarantine", "notify": ["gone-ops"]}}
    created = await admin_client.post("/api/v1/rules", json={"rule": rule},
                                      headers=bearer(admin_key))
    assert created.status == 201, await created.text()
    (warning,) = (await created.json())["warnings"]
    assert _found([warning]) == [
        ("notify_endpoint_disabled", "gone-ops", ["database-rules/page-gone"])]
    assert "the receiver answered 410 Gone" in warning["message"]


@pytest.mark.postgres
async def test_disabling_an_endpoint_an_active_policy_notifies_is_warned_of(
    admin_client: Client, admin_key: str, caplog: pytest.LogCaptureFixture,
) -> None:
    source = SOURCE.replace("muted", "quiet")
    created = await admin_client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "quiet-ops", "kind": "slack", "url": "https://hooks.example.com/q"})
    assert created.status == 201, await created.text()
    hook = f"/api/v1/webhooks/{(await created.json())['id']}"
    _, revision = await upload(admin_client, admin_key, source)
    activated = await admin_client.post(f"/api/v1/revisions/{revision['id']}/activate",
                                        headers=bearer(admin_key))
    assert (await activated.json())["warnings"] == []

    disabled = await admin_client.patch(hook, headers=bearer(admin_key),
                                        json={"enabled": False})
    assert disabled.status == 200, await disabled.text()
    assert _found((await disabled.json())["warnings"]) == [
        ("notify_endpoint_disabled", "quiet-ops", ["quiet/tell-quiet"])]
    assert "policy rules quiet/tell-quiet: notify names 'quiet-ops'" in caplog.text

    enabled = await admin_client.patch(hook, headers=bearer(admin_key),
                                       json={"enabled": True})
    assert enabled.status == 200, await enabled.text()
    assert (await enabled.json())["warnings"] == []
