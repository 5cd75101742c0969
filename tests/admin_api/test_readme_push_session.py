"""The README's `policy push` session prints what a first push of the examples prints:
run as it is written (its settings file aside: `--url` instead) on a fresh database,
whatever it writes on stderr (an upload's warnings, printed before the activation) and
then on stdout, as a terminal shows them. The service and the database are real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.admin_api.test_policy_push_atomic import push
from tests.readme_sessions import README, readme_session

Client = TestClient[Any, Any]
COMMAND = "$ POSTWARDEN_API_KEY=pw_... postwarden-admin "


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """No policy, revision or webhook endpoint before the push, as at a first install."""
    return fresh_database_url


async def test_the_readme_push_session_prints_what_a_first_push_prints(
    admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv, shown = readme_session(COMMAND)
    argv = argv[2:]  # after the key and the program
    assert argv[:2] == ["--config", "/etc/postwarden/admin.yaml"]
    assert argv[2:5] == ["policy", "push", "policies/examples"]
    monkeypatch.chdir(README.parent)
    assert await push(admin_client, admin_key, Path(argv[4]), *argv[5:],
                      monkeypatch=monkeypatch) == 0
    printed = capsys.readouterr()
    assert printed.err.splitlines() + printed.out.splitlines() == shown
