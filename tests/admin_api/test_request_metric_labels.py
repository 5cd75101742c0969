"""postwarden_api_requests_total's labels take only values the service chooses: a client
naming methods no route takes (any a HTTP parser lets through) must not mint a series
per method, unauthenticated, for every route it tries."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

# Methods aiohttp's parser (llhttp's list) takes and no route does.
STRANGE = ("PROPFIND", "MKCOL", "LINK", "UNLINK", "PURGE", "SEARCH", "REPORT", "LOCK")


async def _methods_counted(client: TestClient[Any, Any]) -> set[str]:
    exposition = await (await client.get("/metrics")).text()
    return {sample.labels["method"] for family in text_string_to_metric_families(exposition)
            for sample in family.samples if sample.name == "postwarden_api_requests_total"}


async def test_methods_no_route_takes_are_counted_as_other(
    admin_client: TestClient[Any, Any],
) -> None:
    for method in STRANGE:
        response = await admin_client.request(method, "/api/v1/policies")
        assert response.status in (401, 405), (method, response.status)
    methods = await _methods_counted(admin_client)
    assert "other" in methods
    assert not methods & set(STRANGE)
