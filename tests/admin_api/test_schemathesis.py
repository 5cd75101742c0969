"""schemathesis against the live service: no 5xx, every response matches the document.

The server runs on the test's event loop; schemathesis (synchronous, through
``requests``) runs in a worker thread. Examples per operation are bounded so
the whole run stays well under a minute.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import hypothesis
import schemathesis
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from postwarden_admin_api.app import create_app
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for

EXAMPLES_PER_OPERATION = 8
TIME_BUDGET_SECONDS = 45.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def _run(document: dict[str, Any], base_url: str, key: str) -> list[str]:
    schema = schemathesis.openapi.from_dict(document)
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    tested: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if time.monotonic() > deadline:
            break

        @given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case: Any) -> None:
            case.call_and_validate(base_url=base_url, headers=bearer(key), checks=CHECKS,
                                   timeout=10)

        check()
        tested.append(operation.label)
    return tested


async def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey
) -> None:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings_for(database_url)))
    key = await mint_key("admin")
    document = await (await client.get("/api/v1/openapi.json")).json()
    base_url = str(client.make_url("")).rstrip("/")
    tested = await asyncio.to_thread(_run, document, base_url, key)
    assert len(tested) == sum(len(methods) for methods in document["paths"].values())
