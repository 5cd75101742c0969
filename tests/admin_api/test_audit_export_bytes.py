"""What one audit export holds in memory is bounded in bytes: its pages are read through
a cursor and cut at ``PAGE_MAX_BYTES`` of lines, where a page of 500 events that carry
128 KiB of ``changes`` each held some 70 MB of rows and lines at once. What is exported
is unchanged: every event once, newest first, in ndjson or csv."""

from __future__ import annotations

import csv
import json
import tracemalloc
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api import bodies, routes_audit
from postwarden_admin_api.audit_queries import ROWS_PREFETCH
from postwarden_admin_api.bodies import PAGE_MAX_BYTES
from postwarden_admin_api.context import Role
from tests.admin_api.test_audit_page_bytes import LARGE, _insert_events
from tests.fixtures.adminapp import MintKey, bearer

pytestmark = pytest.mark.postgres

COUNT = 120  # events of LARGE: some 14 MB in all, under one page of EXPORT_BATCH
# One page of lines, the event that overflows it, the rows the cursor has fetched
# ahead, and the line being written; the rest of the process's allocations besides.
HELD_AT_MOST = PAGE_MAX_BYTES + (ROWS_PREFETCH + 2) * LARGE + 4 * 1024 * 1024


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: the tests export every event."""
    return fresh_database_url


def _event_id(kind: str, line: bytes) -> str:
    if kind == "ndjson":
        event_id: str = json.loads(line)["event_id"]
        return event_id
    [row] = csv.reader([line.decode()])
    return row[0]


async def _export_ids(client: TestClient[Any, Any], key: str, kind: str) -> list[str]:
    """The first column of every line of the export, read as it comes (this side holds
    no more than a line)."""
    response = await client.get("/api/v1/audit/export", params={"format": kind},
                                headers=bearer(key))
    assert response.status == 200
    ids: list[str] = []
    pending = b""
    async for chunk in response.content.iter_any():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        ids += [_event_id(kind, line) for line in lines]
    assert pending == b""  # the export ends with a whole line
    return ids


@pytest.mark.parametrize("kind", ["ndjson", "csv"])
async def test_an_export_holds_at_most_a_page_of_bytes(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str, kind: str,
) -> None:
    ids = await _insert_events(database_url, COUNT, LARGE)
    key = await mint_key(Role.AUDITOR)
    tracemalloc.start()
    try:
        exported = await _export_ids(admin_client, key, kind)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    header = ["event_id"] if kind == "csv" else []
    assert exported == header + ids  # each once, newest first
    assert peak < HELD_AT_MOST, f"the export held {peak / 2**20:.1f} MiB at once"


async def test_an_export_page_is_cut_in_bytes_and_each_event_comes_once(
    admin_client: TestClient[Any, Any], mint_key: MintKey, database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bodies, "PAGE_MAX_BYTES", 1000)
    ids = await _insert_events(database_url, 3, 2000)
    key = await mint_key(Role.AUDITOR)
    pages: list[Any] = []
    read_page = routes_audit._export_page

    async def counted(request: Any, filters: Any, after: Any) -> Any:
        pages.append(after)
        return await read_page(request, filters, after)

    monkeypatch.setattr(routes_audit, "_export_page", counted)
    assert await _export_ids(admin_client, key, "csv") == ["event_id", *ids]
    assert len(pages) == 3  # each event alone past the budget is a page of its own
