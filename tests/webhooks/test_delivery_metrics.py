"""Webhook deliveries showed only in the log: an operator could not alert on deliveries
given up, or on an endpoint disabled by its receiver's 410 Gone, nor see a backlog grow.
``/metrics`` counts the attempts by outcome, from 0, the endpoints disabled, and the
deliveries pending."""

from __future__ import annotations

import math
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.webhooks.worker import count_pending
from tests.fixtures.adminapp import bearer
from tests.fixtures.ports import free_port

from .conftest import Start, hook_url
from .receiver import Receiver, wait_for_async
from .support import raise_reject

pytestmark = pytest.mark.postgres
COUNTED = ("postwarden_webhook_attempts_total", "postwarden_webhook_endpoints_disabled_total",
           "postwarden_webhook_pending")


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of its own: nothing delivered before counts."""
    return fresh_database_url


async def _counted(client: TestClient[Any, Any]) -> dict[str, float]:
    text = await (await client.get("/metrics")).text()
    return {sample.labels.get("outcome", sample.name): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name in COUNTED}


async def test_delivery_attempts_and_disabled_endpoints_are_counted(
    database_url: str, start: Start, admin_key: str, receiver: Receiver,
) -> None:
    receiver.statuses = [500, 200, 410]
    client = await start(max_attempts=5)
    assert await _counted(client) == {"delivered": 0, "failed": 0, "dead": 0,
                                      "postwarden_webhook_endpoints_disabled_total": 0,
                                      "postwarden_webhook_pending": 0}
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "ops", "url": hook_url(receiver), "kind": "slack",
        "events": ["message.rejected"]})
    assert created.status == 201, await created.text()

    async def counted(expected: dict[str, float]) -> bool:
        return await _counted(client) == expected

    await raise_reject(database_url)  # refused once (500), then delivered
    assert await wait_for_async(lambda: counted({
        "delivered": 1, "failed": 1, "dead": 0,
        "postwarden_webhook_endpoints_disabled_total": 0,
        "postwarden_webhook_pending": 0})), await _counted(client)
    await raise_reject(database_url)  # gone: dead at once, the endpoint disabled
    assert await wait_for_async(lambda: counted({
        "delivered": 1, "failed": 1, "dead": 1,
        "postwarden_webhook_endpoints_disabled_total": 1,
        "postwarden_webhook_pending": 0})), await _counted(client)


async def test_the_backlog_is_the_deliveries_pending(
    database_url: str, start: Start, admin_key: str, receiver: Receiver,
) -> None:
    receiver.statuses = [503, 503]
    client = await start(backoff_base_seconds=600.0, backoff_cap_seconds=600.0)
    created = await client.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "down", "url": hook_url(receiver), "kind": "slack",
        "events": ["message.rejected"]})
    assert created.status == 201, await created.text()
    await raise_reject(database_url)
    await raise_reject(database_url)

    async def retried_later() -> bool:
        counted = await _counted(client)
        return counted["failed"] == 2  # both refused once, retried in minutes

    assert await wait_for_async(retried_later), await _counted(client)
    assert (await _counted(client))["postwarden_webhook_pending"] == 2


async def test_a_backlog_the_database_does_not_tell_is_nan_not_the_last_one() -> None:
    metrics = Metrics()
    gauge = metrics.webhook_pending
    gauge.set(5)
    away = await asyncpg.create_pool(f"postgresql://postwarden@127.0.0.1:{free_port()}/x",
                                     min_size=0)
    try:
        await count_pending(away, gauge)
    finally:
        await away.close()
    value = metrics.registry.get_sample_value("postwarden_webhook_pending")
    assert value is not None
    assert math.isnan(value)
