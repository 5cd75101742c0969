"""``policy push --dry-run``, as a pull request's CI job runs it: what the deploy would
change (each file unchanged, new, or replacing its active revision, with the diff; the
policies ``--prune`` would deactivate), and whether the service would take the set, with
the same problems the deploy itself reports; nothing is uploaded or activated. The
service and the database are real; the CLI runs as CI runs it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from tests.admin_api.test_policy_push_atomic import active, policies, push, write
from tests.fixtures.adminapp import MintKey

Client = TestClient[Any, Any]


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: the tests compare the whole active set."""
    return fresh_database_url


async def test_a_dry_run_shows_the_change_and_makes_none(  # noqa: PLR0917 - fixtures
    tmp_path: Path, admin_client: Client, admin_key: str, mint_key: MintKey,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    d = tmp_path / "p"
    write(d, "a.yaml", "team-a", "rule-a")
    write(d, "b.yaml", "team-b", "rule-b")
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0
    deployed = await active(admin_client, admin_key)
    write(d, "a.yaml", "team-a", "rule-a", "rule-a2")
    (d / "b.yaml").unlink()
    write(d, "c.yaml", "team-c", "rule-c")
    capsys.readouterr()

    auditor = await mint_key(Role.AUDITOR)  # reads are enough
    assert await push(admin_client, auditor, d, "--prune", "--dry-run",
                      monkeypatch=monkeypatch) == 0
    a = deployed["team-a"]
    assert capsys.readouterr().out.splitlines() == [
        f"{d / 'a.yaml'}: would replace revision {a}",
        f"--- team-a@r{a}",
        f"+++ {d / 'a.yaml'}",
        "@@ -5,3 +5,7 @@",
        "     when:",
        "       sender: [rule-a@evil.test]",
        "     then: reject",
        "+  - name: rule-a2",
        "+    when:",
        "+      sender: [rule-a2@evil.test]",
        "+    then: reject",
        f"{d / 'c.yaml'}: would add policy team-c",
        "team-b: would be deactivated",
        "dry run: nothing uploaded, nothing activated",
    ]
    assert await active(admin_client, admin_key) == deployed
    assert await policies(admin_client, admin_key) == {"team-a", "team-b"}

    assert await push(admin_client, admin_key, d, "--prune", monkeypatch=monkeypatch) == 0
    capsys.readouterr()
    assert await push(admin_client, auditor, d, "--prune", "--dry-run",
                      monkeypatch=monkeypatch) == 0
    now = await active(admin_client, admin_key)
    assert capsys.readouterr().out.splitlines() == [
        f"{d / 'a.yaml'}: unchanged (revision {now['team-a']})",
        f"{d / 'c.yaml'}: unchanged (revision {now['team-c']})",
        "dry run: nothing uploaded, nothing activated",
    ]


async def test_a_dry_run_refuses_what_the_deploy_refuses(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """c.yaml takes the rule name of team-b, deleted from the directory but left active
    without --prune: both runs name the same problem at the same place."""
    d = tmp_path / "p"
    write(d, "a.yaml", "team-a", "rule-a")
    write(d, "b.yaml", "team-b", "rule-b")
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0
    deployed = await active(admin_client, admin_key)
    (d / "b.yaml").unlink()
    write(d, "c.yaml", "team-c", "rule-b")
    capsys.readouterr()

    assert await push(admin_client, admin_key, d, "--dry-run", monkeypatch=monkeypatch) == 1
    out, err = capsys.readouterr()
    problem = (f"  {d / 'c.yaml'}:4:11: rule name 'rule-b' is also used at "
               f"team-b@r{deployed['team-b']}:4:11")
    assert (out, err) == ("", f"{d}: the deploy would be refused\n{problem}\n")
    assert await policies(admin_client, admin_key) == {"team-a", "team-b"}  # nothing uploaded

    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 1
    assert capsys.readouterr().err.splitlines()[-1] == problem
    assert await push(admin_client, admin_key, d, "--dry-run", "--prune",
                      monkeypatch=monkeypatch) == 0


def _senders(directory: Path, order: int) -> None:
    """A policy of 20,000 sender lines, each of 200 senders 100 times (under difflib's
    1% autojunk), in an order of ``order``'s."""
    senders = "".join(f"        - s{i * order % 200}@example.com\n" for i in range(20_000))
    directory.mkdir(exist_ok=True)
    (directory / "big.yaml").write_text(
        f"version: 1\nname: big\nrules:\n  - name: block\n    when:\n      sender:\n"
        f"{senders}    then: reject\n")


async def test_a_long_change_is_shown_at_once(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Its diff took difflib about a minute, the CI job waiting: one hunk now."""
    d = tmp_path / "p"
    _senders(d, 1)
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0
    _senders(d, 7)
    capsys.readouterr()
    async with asyncio.timeout(20):
        assert await push(admin_client, admin_key, d, "--dry-run",
                          monkeypatch=monkeypatch) == 0
    shown = capsys.readouterr().out.splitlines()
    # From the second sender (the first alike) to the last, with 3 lines of context.
    assert shown[3] == "@@ -5,20003 +5,20003 @@"
    assert len(shown) == 1 + 2 + 1 + 3 + 2 * 19_999 + 1 + 1
