"""The garbage collector's pauses are timed into postwarden_gc_pause_seconds."""

from __future__ import annotations

import gc
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families


async def _full_collections(client: TestClient[Any, Any]) -> float:
    exposition = await (await client.get("/metrics")).text()
    return next(sample.value for family in text_string_to_metric_families(exposition)
                for sample in family.samples
                if sample.name == "postwarden_gc_pause_seconds_count"
                and sample.labels == {"generation": "2"})


async def test_a_full_collection_is_timed(admin_client: TestClient[Any, Any]) -> None:
    gc.collect()  # labels the series: an application's first scrape may come before any
    before = await _full_collections(admin_client)
    gc.collect()
    assert await _full_collections(admin_client) == before + 1
