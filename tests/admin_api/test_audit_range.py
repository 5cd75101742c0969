"""The audit search and export refuse a time range that holds no instant, as stats does
(422 validation_failed on `since`); a time without a zone is UTC in all three."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import MintKey, bearer

pytestmark = pytest.mark.postgres

ROUTES = ("/api/v1/audit", "/api/v1/audit/export", "/api/v1/stats")
EMPTY_RANGES = [
    pytest.param({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
                 id="since-after-until"),
    pytest.param({"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
                 id="since-equals-until"),
    # 00:30 without a zone is 00:30 UTC, later than 01:00+01:00 (00:00 UTC)
    pytest.param({"since": "2026-01-01T00:30:00", "until": "2026-01-01T01:00:00+01:00"},
                 id="naive-is-utc"),
]


@pytest.mark.parametrize("params", EMPTY_RANGES)
async def test_an_empty_range_is_refused_alike(
    admin_client: TestClient[Any, Any], mint_key: MintKey, params: dict[str, str]
) -> None:
    key = await mint_key(Role.AUDITOR)
    for path in ROUTES:
        response = await admin_client.get(path, headers=bearer(key), params=params)
        assert response.status == 422, path
        assert (await response.json())["error"] == {
            "code": "validation_failed", "message": "request is invalid",
            "details": [{"field": "since", "message": "must be before until"}],
        }, path


async def test_every_bad_field_is_reported_with_the_range(
    admin_client: TestClient[Any, Any], mint_key: MintKey
) -> None:
    key = await mint_key(Role.AUDITOR)
    params = {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z",
              "action": "maybe"}
    response = await admin_client.get("/api/v1/audit", headers=bearer(key), params=params)
    assert response.status == 422
    assert {d["field"] for d in (await response.json())["error"]["details"]} == {
        "since", "action"}


@pytest.mark.parametrize("path", ROUTES)
async def test_a_range_of_one_hour_is_answered(
    admin_client: TestClient[Any, Any], mint_key: MintKey, path: str
) -> None:
    key = await mint_key(Role.AUDITOR)
    params = {"since": "2026-01-01T00:00:00", "until": "2026-01-01T01:00:00+00:00"}
    response = await admin_client.get(path, headers=bearer(key), params=params)
    assert response.status == 200, await response.text()
