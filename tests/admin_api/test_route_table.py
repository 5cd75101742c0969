"""Every /api/v1 route names its roles (or is public), and the OpenAPI document matches."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import PUBLIC_PATHS, Role, allowed_roles
from postwarden_admin_api.settings import ServiceSettings
from tests.fixtures.adminapp import bearer

A, OP, U = Role.ADMIN, Role.OPERATOR, Role.AUDITOR
# The spec of who may do what (admin may do everything).
EXPECTED_ROLES = {
    ("GET", "/api/v1/keys"): {A},
    ("POST", "/api/v1/keys"): {A},
    ("DELETE", "/api/v1/keys/{key_id}"): {A},
    ("POST", "/api/v1/keys/{key_id}/rotate"): {A},
    ("POST", "/api/v1/policies"): {A, OP},
    ("GET", "/api/v1/policies"): {A, OP, U},
    ("GET", "/api/v1/policies/{name}/revisions"): {A, OP, U},
    ("POST", "/api/v1/policies/{name}/rollback"): {A, OP},
    ("POST", "/api/v1/policies/{name}/deactivate"): {A, OP},
    ("POST", "/api/v1/policies/deploy"): {A, OP},
    ("POST", "/api/v1/policies/test"): {A, OP, U},
    ("GET", "/api/v1/revisions/{revision_id}"): {A, OP, U},
    ("GET", "/api/v1/revisions/{revision_id}/diff/{other_id}"): {A, OP, U},
    ("POST", "/api/v1/revisions/{revision_id}/activate"): {A, OP},
    ("GET", "/api/v1/rules"): {A, OP, U},
    ("POST", "/api/v1/rules"): {A, OP},
    ("PATCH", "/api/v1/rules/{name}"): {A, OP},
    ("DELETE", "/api/v1/rules/{name}"): {A, OP},
    ("GET", "/api/v1/audit"): {A, U},
    ("GET", "/api/v1/audit/export"): {A, U},
    ("GET", "/api/v1/audit/{event_id}"): {A, U},
    ("GET", "/api/v1/stats"): {A, OP, U},
    ("GET", "/api/v1/admin-audit"): {A, U},
    ("GET", "/api/v1/settings"): {A, OP},
    ("PUT", "/api/v1/settings"): {A, OP},
}
PATH_VALUES = {
    "key_id": "0000000000000000", "name": "no-such-policy", "revision_id": "999999",
    "other_id": "999999", "event_id": "00000000-0000-0000-0000-000000000000",
}


def _routes(app: web.Application) -> dict[tuple[str, str], Any]:
    found = {}
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS") or route.resource is None:
            continue
        found[(route.method, route.resource.canonical)] = route.handler
    return found


def test_every_route_is_public_or_names_roles(admin_settings: ServiceSettings) -> None:
    routes = _routes(create_app(admin_settings))
    assert routes, "the app has routes"
    for (method, path), handler in routes.items():
        if path in PUBLIC_PATHS:
            assert allowed_roles(handler) is None, f"{method} {path} is public: no roles"
            continue
        roles = allowed_roles(handler)
        assert roles, f"{method} {path} requires auth but names no roles"
        assert Role.ADMIN in roles
    assert PUBLIC_PATHS == {"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"}


def test_core_routes_allow_exactly_the_specified_roles(admin_settings: ServiceSettings) -> None:
    routes = _routes(create_app(admin_settings))
    for (method, path), expected in EXPECTED_ROLES.items():
        assert (method, path) in routes, f"missing route {method} {path}"
        assert allowed_roles(routes[(method, path)]) == frozenset(expected), (method, path)


async def test_openapi_documents_every_route_and_nothing_else(
    admin_client: TestClient[Any, Any], admin_settings: ServiceSettings
) -> None:
    response = await admin_client.get("/api/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path)
        for path, methods in document["paths"].items() for method in methods
    }
    routes = _routes(create_app(admin_settings))
    assert documented == set(routes)
    for (method, path), handler in routes.items():
        operation = document["paths"][path][method.lower()]
        roles = allowed_roles(handler)
        if roles is None:
            assert operation["security"] == []
        else:
            assert set(operation["x-roles"]) == {r.value for r in roles}, (method, path)


def _role_cases() -> list[Any]:
    return [
        pytest.param(method, path, role, role in allowed, id=f"{method} {path} as {role}")
        for (method, path), allowed in EXPECTED_ROLES.items()
        for role in Role
    ]


@pytest.mark.parametrize(("method", "path", "role", "allowed"), _role_cases())
async def test_role_allowed_or_refused(  # noqa: PLR0917 - fixtures plus table columns
    admin_client: TestClient[Any, Any], role_keys: dict[Role, str],
    method: str, path: str, role: Role, allowed: bool,
) -> None:
    url = path.format(**PATH_VALUES)
    response = await admin_client.request(method, url, headers=bearer(role_keys[role]))
    body = await response.read()
    if allowed:
        assert response.status not in (401, 403, 500), body
    else:
        assert response.status == 403, body
        assert (await response.json())["error"]["code"] == "forbidden"


async def test_unknown_api_path_needs_a_key_first(admin_client: TestClient[Any, Any]) -> None:
    response = await admin_client.get("/api/v1/no-such-thing")
    assert response.status == 401


async def test_unknown_api_path_with_a_key_is_404(
    admin_client: TestClient[Any, Any], role_keys: dict[Role, str]
) -> None:
    response = await admin_client.get("/api/v1/no-such-thing", headers=bearer(role_keys[A]))
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
