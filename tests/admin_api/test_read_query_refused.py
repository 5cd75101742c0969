"""A read refuses query parameters it does not read, as a change does: ignored, a typo
(``/api/v1/webhooks?limt=5``, ``/api/v1/rules?name=x``) answered everything, as if
filtered. Each route declares the parameters it reads, which are the ones documented."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import PUBLIC_PATHS, query_parameters
from postwarden_admin_api.settings import ServiceSettings
from tests.fixtures.adminapp import bearer

READS = [
    "/api/v1/rules?name=r1",
    "/api/v1/policies?name=p",
    "/api/v1/keys?role=sender",
    "/api/v1/settings?name=outbound_enabled",
    "/api/v1/webhooks?limt=5",
    "/api/v1/webhooks/1?fields=url",
    "/api/v1/revisions/1/diff/2?context=10",
    "/api/v1/audit/00000000-0000-4000-8000-000000000000?format=csv",
    "/api/v1/messages/00000000-0000-4000-8000-000000000000?fields=to",
]


@pytest.mark.parametrize("url", READS)
async def test_a_parameter_a_read_does_not_read_is_refused(
    admin_client: TestClient[Any, Any], admin_key: str, url: str
) -> None:
    for method in ("GET", "HEAD"):
        response = await admin_client.request(method, url, headers=bearer(admin_key))
        assert response.status == 422, (method, url)
    response = await admin_client.get(url, headers=bearer(admin_key))
    name = url.partition("?")[2].partition("=")[0]
    assert (await response.json())["error"]["details"] == [
        {"field": name, "message": "unknown parameter; this route takes none"}]


@pytest.mark.parametrize("url", [
    "/healthz?verbose", "/readyz?x=1&x=2", "/metrics?name[]=a&name[]=b",
    "/metrics?module=http_2xx&module=tcp", "/api/v1/openapi.json?_=1&_=2",
])
async def test_a_public_route_ignores_any_query_as_probes_and_scrapers_send_it(
    admin_client: TestClient[Any, Any], url: str
) -> None:
    # It reads none, and answers alike whatever is added; a repeated one (a Prometheus
    # scrape config's params with two values) was 422, the scrape taken for a target down.
    response = await admin_client.get(url)
    assert response.status == 200, await response.text()


async def test_a_suppression_removal_refuses_a_parameter_beside_its_address(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    response = await admin_client.delete("/api/v1/suppressions", headers=bearer(admin_key),
                                         params={"address": "a@example.org", "force": "1"})
    assert response.status == 422, await response.text()
    assert [d["field"] for d in (await response.json())["error"]["details"]] == ["force"]


async def test_each_route_reads_the_query_parameters_it_documents(
    admin_client: TestClient[Any, Any], admin_settings: ServiceSettings
) -> None:
    document = await (await admin_client.get("/api/v1/openapi.json")).json()
    app = create_app(admin_settings)
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method in ("HEAD", "OPTIONS") or path in PUBLIC_PATHS:
            continue
        operation = document["paths"][path][route.method.lower()]
        documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        declared = set(query_parameters(route.handler).names)
        assert declared == documented, (route.method, path)
