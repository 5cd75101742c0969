"""The key, webhook, policy, rules and settings routes declared no error response but ``default``: a
client generated from the document could not tell a key revoked already (404) from one
rotated before (409 ``already_rotated``), a webhook name taken (409 ``name_taken``) from
a URL the SSRF guard refuses (422 ``url_not_allowed``), or a rollback with no earlier
revision (409 ``no_previous_revision``) from one of a policy not active (409
``no_active_policy``), but by reading docs/api.md. Each now declares every error status
it answers with, its codes an ``enum``, checked here against the service's real answers.
So do the audit export, event, stats and admin log routes, which declared only ``default``
too: an export's filter refused (422) from one read past the statement timeout (503
``query_timeout``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api import audit_queries
from postwarden_admin_api.context import Role
from postwarden_admin_api.runtime_settings import SECRET_SETTINGS
from postwarden_store import connect
from tests.fixtures.adminapp import MintKey, bearer
from tests.webhooks.support import add_endpoint, generate_secret

from .test_openapi_error_codes import _codes

pytestmark = pytest.mark.postgres
API_MD = Path(__file__).parents[2] / "docs" / "api.md"
Client = TestClient[Any, Any]
KEYS, KEY, ROTATE = "/api/v1/keys", "/api/v1/keys/{key_id}", "/api/v1/keys/{key_id}/rotate"
HOOKS, HOOK = "/api/v1/webhooks", "/api/v1/webhooks/{id}"
DELIVERIES = "/api/v1/webhooks/{id}/deliveries"
REPLAY = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay"
POLICY_TEST = "/api/v1/policies/test"
POLICIES, REVISIONS = "/api/v1/policies", "/api/v1/policies/{name}/revisions"
DEPLOY = "/api/v1/policies/deploy"
DEACTIVATE, ROLLBACK = "/api/v1/policies/{name}/deactivate", "/api/v1/policies/{name}/rollback"
REVISION, ACTIVATE = "/api/v1/revisions/{revision_id}", "/api/v1/revisions/{revision_id}/activate"
DIFF = "/api/v1/revisions/{revision_id}/diff/{other_id}"
RULES, RULE, SETTINGS = "/api/v1/rules", "/api/v1/rules/{name}", "/api/v1/settings"
AUDIT, EXPORT, EVENT = "/api/v1/audit", "/api/v1/audit/export", "/api/v1/audit/{event_id}"
STATS, ADMIN_AUDIT = "/api/v1/stats", "/api/v1/admin-audit"
ROUTES = (KEYS, KEY, ROTATE, HOOKS, HOOK, DELIVERIES, REPLAY, POLICY_TEST, POLICIES, REVISIONS,
          DEPLOY, DEACTIVATE, ROLLBACK, REVISION, ACTIVATE, DIFF, RULES, RULE, SETTINGS,
          AUDIT, EXPORT, EVENT, STATS, ADMIN_AUDIT)
NO_EVENT = f"{AUDIT}/00000000-0000-4000-8000-000000000000"
STALE = {"If-Match": '"999999999"'}
YAML = {"Content-Type": "application/yaml"}
JSON = {"Content-Type": "application/json"}


class Refused(NamedTuple):
    """A request the service refuses: its operation, and the status it answers with."""

    method: str
    template: str
    url: str
    body: bytes | aiohttp.FormData | None
    headers: dict[str, str]
    status: int


async def _document(client: Client) -> dict[str, Any]:
    document: dict[str, Any] = await (await client.get("/api/v1/openapi.json")).json()
    return document


async def test_every_error_status_of_these_routes_lists_its_codes(admin_client: Client
                                                                  ) -> None:
    paths = (await _document(admin_client))["paths"]
    unlisted = [(method, path, status)
                for path in ROUTES for method, spec in paths[path].items()
                for status, answer in spec["responses"].items()
                if status != "default" and int(status) >= 400 and not _codes(answer)]
    assert unlisted == []


async def _key_refusals(client: Client, admin: str, mint_key: MintKey) -> list[Refused]:
    revoked = (await mint_key(Role.OPERATOR)).split("_")[1]
    await client.delete(f"{KEYS}/{revoked}", headers=bearer(admin))
    rotated = (await mint_key(Role.OPERATOR)).split("_")[1]
    assert (await client.post(f"{KEYS}/{rotated}/rotate", headers=bearer(admin),
                              json={})).status == 201
    operator = await mint_key(Role.OPERATOR)
    return [
        Refused("get", KEYS, KEYS, None, bearer(operator), 403),
        Refused("post", KEYS, KEYS, b"{}", JSON, 422),
        Refused("post", KEYS, KEYS, b"{", JSON, 400),
        Refused("post", KEYS, KEYS, b"{}", {"Content-Type": "text/plain"}, 415),
        Refused("delete", KEY, f"{KEYS}/nosuch", None, {}, 404),
        Refused("delete", KEY, f"{KEYS}/{revoked}", None, {}, 404),
        Refused("post", ROTATE, f"{KEYS}/nosuch/rotate", b"{}", JSON, 404),
        Refused("post", ROTATE, f"{KEYS}/{rotated}/rotate", b"{}", JSON, 409),
        Refused("post", ROTATE, f"{KEYS}/{rotated}/rotate", b'{"grace_secs": 0}', JSON, 422),
    ]


async def _webhook_refusals(database_url: str) -> list[Refused]:
    conn = await connect(database_url)
    try:  # nothing is sent: no event is raised to them
        first, _ = [await add_endpoint(conn, name, "https://127.0.0.1:9/hook", [],
                                       generate_secret()) for name in ("refused-a", "refused-b")]
    finally:
        await conn.close()
    one, none = f"{HOOKS}/{first}", f"{HOOKS}/999999999"
    return [
        Refused("post", HOOKS, HOOKS, b"{}", JSON, 422),
        Refused("post", HOOKS, HOOKS, b'{"name": "x", "url": "https://127.0.0.1/"}', JSON, 422),
        Refused("post", HOOKS, HOOKS, b"[]", JSON, 400),
        Refused("post", HOOKS, HOOKS, b"{}", {"Content-Type": "text/plain"}, 415),
        Refused("get", HOOK, none, None, {}, 404),
        Refused("patch", HOOK, none, b"{}", JSON, 404),
        Refused("patch", HOOK, one, b'{"name": "refused-b"}', JSON, 409),
        Refused("patch", HOOK, one, b'{"enabled": "yes"}', JSON, 422),
        Refused("delete", HOOK, none, None, {}, 404),
        Refused("get", DELIVERIES, f"{one}/deliveries?stauts=dead", None, {}, 422),
        Refused("get", DELIVERIES, f"{none}/deliveries", None, {}, 404),
        Refused("post", REPLAY, f"{one}/deliveries/999999999/replay", None, {}, 404),
    ]


def _policy_test_refusals() -> list[Refused]:
    def form(**fields: str) -> aiohttp.FormData:
        data = aiohttp.FormData(fields)
        data.add_field("message", b"Subject: x\r\n\r\nhi\r\n", filename="m.eml")
        return data

    return [
        Refused("post", POLICY_TEST, POLICY_TEST, b"{}", JSON, 415),
        Refused("post", POLICY_TEST, POLICY_TEST, form(sender="nobody"), {}, 422),
        Refused("post", POLICY_TEST, POLICY_TEST, form(policy="version: ["), {}, 422),
        Refused("post", POLICY_TEST, POLICY_TEST, form(revision_id=str(2**62)), {}, 404),
    ]


async def _policy_refusals(client: Client, admin: str) -> list[Refused]:
    source = b"version: 1\nname: refused-p\nrules: []\n"
    uploaded = await client.post(POLICIES, data=source, headers={**bearer(admin), **YAML})
    assert uploaded.status in (200, 201)
    revision = (await uploaded.json())["id"]
    name, one, none = "refused-p", f"/api/v1/revisions/{revision}", "/api/v1/revisions/999999999"
    inactive = f"{POLICIES}/{name}"
    return [
        Refused("post", POLICIES, POLICIES, source, {"Content-Type": "text/html"}, 415),
        Refused("post", POLICIES, POLICIES, b"version: [", YAML, 422),
        Refused("post", POLICIES, POLICIES, b"version: 1\nname: database-rules\nrules: []\n",
                YAML, 422),
        Refused("get", REVISIONS, f"{POLICIES}/refused-none/revisions", None, {}, 404),
        Refused("get", REVISIONS, f"{inactive}/revisions?limt=1", None, {}, 422),
        Refused("post", DEPLOY, DEPLOY, b'{"activate": [999999999]}', JSON, 404),
        Refused("post", DEPLOY, DEPLOY, b'{"deactivate": ["refused-p"]}', JSON, 409),
        Refused("post", DEPLOY, DEPLOY, b'{"deactivate": ["database-rules"]}', JSON, 422),
        Refused("post", DEPLOY, DEPLOY, b"{", JSON, 400),
        Refused("post", DEACTIVATE, f"{inactive}/deactivate", None, {}, 409),
        Refused("post", DEACTIVATE, f"{inactive}/deactivate", None, STALE, 412),
        Refused("post", DEACTIVATE, f"{POLICIES}/refused-none/deactivate", None, {}, 404),
        Refused("post", DEPLOY, DEPLOY, b"{}", {**JSON, **STALE}, 412),
        Refused("post", ROLLBACK, f"{inactive}/rollback", b"{}", JSON, 409),
        Refused("post", ROLLBACK, f"{POLICIES}/refused-none/rollback", b"{}", JSON, 404),
        Refused("post", ROLLBACK, f"{inactive}/rollback", b'{"revision_id": "1"}', JSON, 422),
        Refused("get", REVISION, f"{one}?format=xml", None, {}, 422),
        Refused("get", REVISION, none, None, {}, 404),
        Refused("get", DIFF, f"{none}/diff/{revision}", None, {}, 404),
        Refused("post", ACTIVATE, f"{none}/activate", None, {}, 404),
        Refused("post", ACTIVATE, f"{one}/activate", None, STALE, 412),
    ]


async def _rules_and_settings_refusals(client: Client, admin: str, mint_key: MintKey
                                       ) -> list[Refused]:
    rule = {"name": "refused-r", "when": {"sender": ["nobody@refused.invalid"]},
            "then": "accept"}
    created = await client.post(RULES, headers=bearer(admin), json={"rule": rule})
    assert created.status == 201, await created.text()
    again = json.dumps({"rule": rule}).encode()
    operator = await mint_key(Role.OPERATOR)
    secret = json.dumps({next(iter(SECRET_SETTINGS)): "operator-may-not-set-this"}).encode()
    return [
        Refused("post", RULES, RULES, b'{"rule": {"name": "x"}}', JSON, 422),
        Refused("post", RULES, RULES, again, JSON, 409),
        Refused("post", RULES, RULES, again, {**JSON, **STALE}, 412),
        Refused("patch", RULE, f"{RULES}/nosuch", b"{}", JSON, 404),
        Refused("patch", RULE, f"{RULES}/refused-r", b'{"position": -1}', JSON, 422),
        Refused("delete", RULE, f"{RULES}/nosuch", None, {}, 404),
        Refused("delete", RULE, f"{RULES}/refused-r", None, STALE, 412),
        Refused("put", SETTINGS, SETTINGS, b'{"nosuch": 1}', JSON, 422),
        Refused("put", SETTINGS, SETTINGS, b"{", JSON, 400),
        Refused("put", SETTINGS, SETTINGS, b"{}", {**JSON, **STALE}, 412),
        Refused("put", SETTINGS, SETTINGS, secret, {**JSON, **bearer(operator)}, 403),
    ]


def _audit_refusals() -> list[Refused]:
    return [
        Refused("get", EXPORT, f"{EXPORT}?format=xml", None, {}, 422),
        Refused("get", EXPORT, f"{EXPORT}?action=maybe", None, {}, 422),
        Refused("get", EVENT, f"{AUDIT}/not-a-uuid", None, {}, 404),
        Refused("get", EVENT, NO_EVENT, None, {}, 404),
        Refused("get", STATS, f"{STATS}?bucket=week", None, {}, 422),
        Refused("get", ADMIN_AUDIT, f"{ADMIN_AUDIT}?limit=0", None, {}, 422),
    ]


def _slow_reads() -> list[Refused]:
    """Each audit read, while the tables it reads are locked: past the statement timeout."""
    return [Refused("get", template, url, None, {}, 503) for template, url in (
        (EXPORT, EXPORT), (EVENT, NO_EVENT), (STATS, STATS), (ADMIN_AUDIT, ADMIN_AUDIT))]


async def _misanswered(client: Client, key: str, refusals: list[Refused]
                       ) -> list[tuple[str, str, int, str]]:
    """The ``refusals`` answered with another status, or with a code not declared."""
    paths = (await _document(client))["paths"]
    wrong = []
    for refused in refusals:
        response = await client.request(
            refused.method.upper(), refused.url, data=refused.body,
            headers={**bearer(key), **refused.headers})
        code = (await response.json())["error"]["code"]
        declared = paths[refused.template][refused.method]["responses"]
        if (response.status != refused.status
                or code not in (_codes(declared.get(str(response.status), {})) or [])):
            wrong.append((refused.method, refused.url, response.status, code))
    return wrong


async def test_a_refusal_is_answered_as_declared(
    admin_client: Client, admin_key: str, mint_key: MintKey, database_url: str
) -> None:
    """Under its own status (not only ``default``), with a code it lists."""
    refusals = [*await _key_refusals(admin_client, admin_key, mint_key),
                *await _webhook_refusals(database_url), *_policy_test_refusals(),
                *await _policy_refusals(admin_client, admin_key),
                *await _rules_and_settings_refusals(admin_client, admin_key, mint_key),
                *_audit_refusals()]
    assert await _misanswered(admin_client, admin_key, refusals) == []


async def test_an_audit_read_past_the_statement_timeout_is_answered_as_declared(
    admin_client: Client, admin_key: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_queries, "STATEMENT_TIMEOUT_MS", 200)
    blocker = await connect(database_url)
    try:
        async with blocker.transaction(), asyncio.timeout(60):
            # Every audit read now waits for these locks: they stand for a read that is slow.
            await blocker.execute("LOCK TABLE audit_events, admin_audit IN ACCESS EXCLUSIVE MODE")
            assert await _misanswered(admin_client, admin_key, _slow_reads()) == []
    finally:
        await blocker.close()


def _route_row(method: str, path: str) -> str:
    """docs/api.md's table row of the route."""
    start = f"| {method.upper()} | `{path}` |"
    rows = [line for line in API_MD.read_text(encoding="utf-8").splitlines()
            if line.startswith(start)]
    assert len(rows) == 1, start
    return rows[0]


async def test_a_deploy_naming_no_revision_is_a_404_as_documented(
    admin_client: Client, admin_key: str
) -> None:
    """Each ``activate[i]`` that is no revision is named in ``details``: docs/api.md said
    nothing of the 404, and the document's only ``see code``."""
    response = await admin_client.post(DEPLOY, headers=bearer(admin_key),
                                       json={"activate": [999999998, 999999999]})
    assert response.status == 404
    error = (await response.json())["error"]
    assert error["code"] == "not_found"
    assert [d["field"] for d in error["details"]] == ["activate[0]", "activate[1]"]
    assert "404 `not_found`" in _route_row("post", DEPLOY)
    assert "activate[i]" in _route_row("post", DEPLOY)
    declared = (await _document(admin_client))["paths"][DEPLOY]["post"]["responses"]["404"]
    assert "activate[i]" in declared["description"]


async def test_an_unknown_audit_event_is_a_404_as_documented(
    admin_client: Client, admin_key: str
) -> None:
    """docs/api.md's row said nothing of it: an id that is no UUID is no 422 but a 404."""
    for url in (NO_EVENT, f"{AUDIT}/not-a-uuid"):
        response = await admin_client.get(url, headers=bearer(admin_key))
        assert response.status == 404, url
        assert (await response.json())["error"]["code"] == "not_found", url
    assert "404 `not_found`" in _route_row("get", EVENT)
