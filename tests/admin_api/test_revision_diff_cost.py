"""GET /api/v1/revisions/{id}/diff/{other}: difflib's matching grows about with the cube
of the lines it compares when lines recur (each under 1% of them): two revisions of a
20,000-line policy held an engine thread for about a minute (every upload, test and
activation waiting behind two such diffs). Only the changed stretch is compared now,
and one past diffs.MATCHED_LINES lines is one hunk replacing it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.revisions import store_revision
from postwarden_store import connect
from tests.fixtures.adminapp import bearer

pytestmark = pytest.mark.postgres
LINES = 20_000
RECURRING = LINES // 100  # each line 100 times: under difflib's 1% autojunk


async def _revisions(database_url: str, name: str, *sources: str) -> list[int]:
    conn = await connect(database_url)
    try:
        ids = []
        for source in sources:
            async with conn.transaction():
                row, _ = await store_revision(conn, name, source, content_hash=uuid.uuid4().hex,
                                              author=None, comment=None)
            ids.append(row["id"])
        return ids
    finally:
        await conn.close()


async def _diff(client: TestClient[Any, Any], key: str, ids: list[int]) -> str:
    async with asyncio.timeout(10):
        response = await client.get(f"/api/v1/revisions/{ids[0]}/diff/{ids[1]}",
                                    headers=bearer(key))
        assert response.status == 200
        return await response.text()


async def test_a_long_change_of_recurring_lines_is_one_hunk_at_once(
        admin_client: TestClient[Any, Any], admin_key: str, database_url: str) -> None:
    old = [f"  - s{i % RECURRING}@example.com\n" for i in range(LINES)]
    new = [f"  - s{i * 7 % RECURRING}@example.com\n" for i in range(LINES)]
    name = f"big-{uuid.uuid4().hex[:8]}"
    ids = await _revisions(database_url, name, "".join(old), "".join(new))
    lines = (await _diff(admin_client, admin_key, ids)).splitlines(keepends=True)
    assert lines[:3] == [f"--- {name}@r{ids[0]}\n", f"+++ {name}@r{ids[1]}\n",
                         f"@@ -1,{LINES} +1,{LINES} @@\n"]
    # The first line is alike; every other one goes and comes.
    assert lines[3:] == [f" {old[0]}", *(f"-{line}" for line in old[1:]),
                         *(f"+{line}" for line in new[1:])]


async def test_a_change_deep_in_a_long_source_is_numbered_as_in_the_whole(
        admin_client: TestClient[Any, Any], admin_key: str, database_url: str) -> None:
    old = [f"  - s{i % RECURRING}@example.com\n" for i in range(LINES)]
    new = [*old[:5000], "  - changed@example.com\n", *old[5001:]]
    ids = await _revisions(database_url, f"deep-{uuid.uuid4().hex[:8]}", "".join(old),
                           "".join(new))
    lines = (await _diff(admin_client, admin_key, ids)).splitlines(keepends=True)
    assert lines[2:] == ["@@ -4998,7 +4998,7 @@\n", *(f" {line}" for line in old[4997:5000]),
                         f"-{old[5000]}", f"+{new[5000]}",
                         *(f" {line}" for line in old[5001:5004])]
