"""The README's `curl -s -X PUT .../settings` line shows what the service answers: the
settings as they now stand (it showed nothing, as if the PUT printed nothing). Sent as
written, its key aside, to a real service on a fresh database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.fixtures.adminapp import bearer
from tests.readme_sessions import readme_session

Client = TestClient[Any, Any]
COMMAND = "$ curl -s -X PUT http://127.0.0.1:8025/api/v1/settings "


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """No setting changed before the PUT, as at a first install."""
    return fresh_database_url


def _matches(printed: str, shown: list[str]) -> bool:
    """``shown`` is one line, ``printed`` with a part left out as `...` at most once."""
    if len(shown) != 1:
        return False
    head, cut, tail = shown[0].partition("...")
    if not cut:
        return printed == head
    return printed.startswith(head) and printed.endswith(tail) \
        and len(printed) >= len(head) + len(tail)


async def test_the_readme_settings_put_shows_what_the_service_answers(
    admin_client: Client, admin_key: str,
) -> None:
    argv, shown = readme_session(COMMAND)
    assert argv[:4] == ["curl", "-s", "-X", "PUT"]
    body = argv[argv.index("-d") + 1]
    response = await admin_client.put("/api/v1/settings", headers=bearer(admin_key),
                                      json=json.loads(body))
    printed = await response.text()
    assert response.status == 200, printed
    assert _matches(printed, shown), (printed, shown)
