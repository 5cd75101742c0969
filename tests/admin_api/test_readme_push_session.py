"""The README's `policy push` session prints what a first push of the examples prints:
run as it is written (its settings file aside: `--url` instead) on a fresh database,
whatever it writes on stderr (an upload's warnings, printed before the activation) and
then on stdout, as a terminal shows them. The service and the database are real."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.admin_api.test_policy_push_atomic import push

Client = TestClient[Any, Any]
REPO = Path(__file__).resolve().parents[2]
COMMAND = "$ POSTWARDEN_API_KEY=pw_... postwarden-admin "


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """No policy, revision or webhook endpoint before the push, as at a first install."""
    return fresh_database_url


def _session() -> tuple[list[str], list[str]]:
    """The README's push command (its arguments after the program) and the lines shown
    after it."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(COMMAND))
    end = start
    while lines[end].endswith("\\"):
        end += 1
    command = " ".join(line.rstrip("\\").strip() for line in lines[start:end + 1])
    shown = lines[end + 1:lines.index("```", end)]
    return shlex.split(command)[3:], shown


async def test_the_readme_push_session_prints_what_a_first_push_prints(
    admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv, shown = _session()
    assert argv[:2] == ["--config", "/etc/postwarden/admin.yaml"]
    assert argv[2:5] == ["policy", "push", "policies/examples"]
    monkeypatch.chdir(REPO)
    assert await push(admin_client, admin_key, Path(argv[4]), *argv[5:],
                      monkeypatch=monkeypatch) == 0
    printed = capsys.readouterr()
    assert printed.err.splitlines() + printed.out.splitlines() == shown
