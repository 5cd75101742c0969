"""A rule's ``notify`` naming a webhook endpoint that does not exist (never made, renamed,
deleted) raised nothing for it, and nothing said so. The milter refuses no set for it;
the admin service, which knows the endpoints, warns where a revision is stored or
activated: in the answer, and in its log."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_store import connect
from tests.fixtures.adminapp import bearer
from tests.webhooks.support import add_endpoint

from .test_policies import upload
from .test_policy_push_atomic import push

pytestmark = pytest.mark.postgres
Client = TestClient[Any, Any]
NOTIFYING = ("version: 1\nname: alerts\nrules:\n  - name: tell\n    when:\n"
             "      sender: [bad@evil.test]\n    then: {action: reject, notify: [ops, sec-team]}\n")


def _missing(warnings: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    return [(w["code"], w["endpoint"], w["rules"]) for w in warnings]


async def test_a_notify_naming_no_endpoint_is_warned_of(
    admin_client: Client, admin_key: str, database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = await connect(database_url)
    try:
        await add_endpoint(conn, "ops", "https://hooks.example.com/ops", [], None,
                           kind="slack")
    finally:
        await conn.close()
    expected = [("notify_endpoint_missing", "sec-team", ["alerts/tell"])]
    status, revision = await upload(admin_client, admin_key, NOTIFYING)
    assert status == 201
    assert _missing(revision["warnings"]) == expected
    assert "sec-team" in revision["warnings"][0]["message"]
    assert "policy rules alerts/tell: notify names 'sec-team'" in caplog.text

    activated = await admin_client.post(f"/api/v1/revisions/{revision['id']}/activate",
                                        headers=bearer(admin_key))
    assert activated.status == 200
    assert _missing((await activated.json())["warnings"]) == expected

    rule = {"name": "page", "when": {"sender": "x@evil.test"},
            "then": {"action": "quarantine", "notify": ["pager"]}}
    created = await admin_client.post("/api/v1/rules", json={"rule": rule},
                                      headers=bearer(admin_key))
    assert created.status == 201
    assert _missing((await created.json())["warnings"]) == [
        ("notify_endpoint_missing", "pager", ["database-rules/page"])]

    deployed = await admin_client.post("/api/v1/policies/deploy", headers=bearer(admin_key),
                                       json={"deactivate": ["alerts"]})
    assert deployed.status == 200
    assert (await deployed.json())["warnings"] == []


async def test_a_set_notifying_no_endpoint_is_still_activated(
    admin_client: Client, admin_key: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    source = NOTIFYING.replace("alerts", "deployed").replace("- name: tell", "- name: tells")
    _, revision = await upload(admin_client, admin_key, source)
    deployed = await admin_client.post("/api/v1/policies/deploy", headers=bearer(admin_key),
                                       json={"activate": [revision["id"]]})
    assert deployed.status == 200, await deployed.text()
    body = await deployed.json()
    assert body["activated"] == [revision["id"]]
    assert {w["endpoint"] for w in body["warnings"]} >= {"sec-team"}


async def test_a_push_prints_each_uploads_warnings(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Pushed again unchanged, the deploy activates nothing and answers no warning: the
    push printed the deploy's only, and said nothing of what the upload answered."""
    source = NOTIFYING.replace("alerts", "pushed").replace("- name: tell", "- name: told")
    (tmp_path / "pushed.yaml").write_text(source)
    warned = f"{tmp_path / 'pushed.yaml'}: warning: pushed/told: notify names 'sec-team'"
    for _ in range(2):
        assert await push(admin_client, admin_key, tmp_path, monkeypatch=monkeypatch) == 0
        assert capsys.readouterr().err.count(warned) == 1


async def test_deleting_an_endpoint_an_active_policy_notifies_is_warned_of(
    admin_client: Client, admin_key: str, caplog: pytest.LogCaptureFixture,
) -> None:
    source = NOTIFYING.replace("alerts", "paging").replace("ops, sec-team", "oncall, soc")
    hooks = {}
    for name in ("oncall", "soc", "spare"):
        created = await admin_client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
            "name": name, "kind": "slack", "url": f"https://hooks.example.com/{name}"})
        assert created.status == 201, await created.text()
        hooks[name] = f"/api/v1/webhooks/{(await created.json())['id']}"
    _, revision = await upload(admin_client, admin_key, source)
    activated = await admin_client.post(f"/api/v1/revisions/{revision['id']}/activate",
                                        headers=bearer(admin_key))
    assert (await activated.json())["warnings"] == []

    deleted = await admin_client.delete(hooks["soc"], headers=bearer(admin_key))
    assert deleted.status == 200, await deleted.text()
    assert _missing((await deleted.json())["warnings"]) == [
        ("notify_endpoint_missing", "soc", ["paging/tell"])]
    assert "policy rules paging/tell: notify names 'soc'" in caplog.text

    spare = await admin_client.delete(hooks["spare"], headers=bearer(admin_key))
    assert spare.status == 200, await spare.text()
    assert (await spare.json())["warnings"] == []  # not soc's again: this one's only


async def test_renaming_an_endpoint_an_active_policy_notifies_is_warned_of(
    admin_client: Client, admin_key: str,
) -> None:
    source = NOTIFYING.replace("alerts", "duty").replace("ops, sec-team", "beeper").replace(
        "- name: tell", "- name: page-duty")
    created = await admin_client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "beeper", "kind": "slack", "url": "https://hooks.example.com/beeper"})
    hook = f"/api/v1/webhooks/{(await created.json())['id']}"
    _, revision = await upload(admin_client, admin_key, source)
    activated = await admin_client.post(f"/api/v1/revisions/{revision['id']}/activate",
                                        headers=bearer(admin_key))
    assert activated.status == 200, await activated.text()
    assert (await activated.json())["warnings"] == []

    kept = await admin_client.patch(hook, headers=bearer(admin_key), json={"name": "beeper"})
    assert (await kept.json())["warnings"] == []
    renamed = await admin_client.patch(hook, headers=bearer(admin_key),
                                       json={"name": "beeper-2"})
    assert renamed.status == 200, await renamed.text()
    assert _missing((await renamed.json())["warnings"]) == [
        ("notify_endpoint_missing", "beeper", ["duty/page-duty"])]


async def test_an_active_set_that_no_longer_loads_does_not_stop_a_delete(
    admin_client: Client, admin_key: str, database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An active revision stored by another version, which this one cannot read: the
    delete is done, without warnings, and the log says why."""
    created = await admin_client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "old-hook", "kind": "slack", "url": "https://hooks.example.com/old"})
    hook = f"/api/v1/webhooks/{(await created.json())['id']}"
    source = NOTIFYING.replace("alerts", "legacy").replace("ops, sec-team", "old-hook").replace(
        "- name: tell", "- name: legacy-tell")
    _, revision = await upload(admin_client, admin_key, source)
    activated = await admin_client.post(f"/api/v1/revisions/{revision['id']}/activate",
                                        headers=bearer(admin_key))
    assert activated.status == 200, await activated.text()
    conn = await connect(database_url)
    try:
        await conn.execute("UPDATE policy_revisions SET source = $2 WHERE id = $1",
                           revision["id"], source.replace("version: 1", "version: 99"))
    finally:
        await conn.close()

    deleted = await admin_client.delete(hook, headers=bearer(admin_key))
    assert deleted.status == 200, await deleted.text()
    assert (await deleted.json())["warnings"] == []
    assert "the active policy set does not load here" in caplog.text
    assert (await admin_client.get(hook, headers=bearer(admin_key))).status == 404
