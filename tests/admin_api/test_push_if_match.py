"""``policy push`` read the active policies, then deployed without their ETag: another
operator's activation between the two was replaced unseen. The deploy now sends the
ETag as If-Match; the raced push deploys nothing and says to push again. The service,
the database and the other operator's change are real; only the moment is chosen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.policy_push import _Service

from .test_policies import policy, upload
from .test_policy_push_atomic import active, push

pytestmark = pytest.mark.postgres


async def test_a_change_between_the_read_and_the_deploy_stops_the_push(
    tmp_path: Path, admin_client: TestClient[Any, Any], admin_key: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "a.yaml").write_text(policy("raced", "pushed@evil.test"))
    status, theirs = await upload(admin_client, admin_key, policy("raced", "theirs@evil.test"))
    assert status == 201
    read = _Service.active

    async def read_then_raced(service: _Service) -> Any:
        found = await read(service)  # another operator activates theirs right after
        status, _ = await service.call("POST", f"/api/v1/revisions/{theirs['id']}/activate")
        assert status == 200
        return found

    monkeypatch.setattr(_Service, "active", read_then_raced)
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 1
    assert "another change to the active policies happened since push read them; " \
           "nothing deployed: run push again" in capsys.readouterr().err
    assert await active(admin_client, admin_key) == {"raced": theirs["id"]}
