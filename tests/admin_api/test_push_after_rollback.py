"""After a bad deploy an operator rolls a policy back through the API, and the team then
reverts the file in git to match: the next ``policy push`` finds the active revision
already there. It creates no revision and reloads no milter, as any push of unchanged
files, though the newest revision (the one rolled back from) differs. The service, the
database and its NOTIFY are real; the CLI runs as CI runs it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from postwarden_store.policies import POLICY_CHANNEL
from tests.admin_api.test_policy_push_atomic import active, push, write
from tests.fixtures.adminapp import bearer

Client = TestClient[Any, Any]


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: the tests count revisions and reloads."""
    return fresh_database_url


async def revisions(client: Client, key: str, name: str) -> list[int]:
    response = await client.get(f"/api/v1/policies/{name}/revisions", headers=bearer(key))
    return [r["id"] for r in (await response.json())["revisions"]]


async def test_pushing_what_a_rollback_made_active_changes_nothing(  # noqa: PLR0917 - fixtures
    tmp_path: Path, admin_client: Client, admin_key: str, database_url: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    d = tmp_path / "p"
    write(d, "inbound.yaml", "team-inbound", "good-rule")
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0
    good = (await active(admin_client, admin_key))["team-inbound"]
    write(d, "inbound.yaml", "team-inbound", "good-rule", "bad-rule")
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0
    rolled = await admin_client.post("/api/v1/policies/team-inbound/rollback",
                                     headers=bearer(admin_key))
    assert rolled.status == 200, await rolled.text()
    write(d, "inbound.yaml", "team-inbound", "good-rule")  # git revert
    before = await revisions(admin_client, admin_key, "team-inbound")
    capsys.readouterr()

    listener = await asyncpg.connect(database_url)
    reloads: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(POLICY_CHANNEL, lambda *args: reloads.put_nowait(args[3]))
    try:
        assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0
        # NOTIFYs arrive in commit order: a reload the push asked for comes before this.
        await listener.execute("SELECT pg_notify($1, 'marker')", POLICY_CHANNEL)
        first = await asyncio.wait_for(reloads.get(), 10)
    finally:
        await listener.close()
    assert capsys.readouterr().out == (f"{d / 'inbound.yaml'}: active as revision {good} "
                                       "(unchanged)\n")
    assert first == "marker"
    assert await revisions(admin_client, admin_key, "team-inbound") == before
    assert await active(admin_client, admin_key) == {"team-inbound": good}
