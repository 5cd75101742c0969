"""The hash of one set of policy files is the same wherever it is shown: `check`'s
``policy_hash``, a milter reading them from its policy_dir, and, once ``policy push``
uploaded their bytes, a milter reading the active revisions (its audit rows name it)
and each revision's ``content_hash``, whatever line ends an editor saved (LF, CRLF,
old Mac CR) and a byte order mark. The service, the database and the CLIs are real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_policies import load_policy_set, load_policy_set_from_sources
from postwarden_policies.cli import main as policy_cli
from postwarden_store import connect
from postwarden_store.policies import fetch_active_sources
from tests.admin_api.test_policy_push_atomic import push
from tests.fixtures.adminapp import bearer

Client = TestClient[Any, Any]
POLICY = ('version: 1\nname: {name}\ndescription: "two\nlines"\nrules:\n  - name: {name}-r\n'
          "    when:\n      subject: |\n        x\n    then: reject\n")


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url


async def test_one_set_has_one_hash_whatever_its_line_ends(  # noqa: PLR0917 - fixtures
    tmp_path: Path, admin_client: Client, admin_key: str, database_url: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    saved = {"lf": ("\n", ""), "crlf": ("\r\n", ""), "cr": ("\r", ""), "bom": ("\r\n", "\ufeff")}
    for name, (newline, mark) in saved.items():
        text = mark + POLICY.format(name=name).replace("\n", newline)
        (tmp_path / f"{name}.yaml").write_bytes(text.encode())
    assert policy_cli(["check", "--format", "json", str(tmp_path)]) == 0
    shown = json.loads(capsys.readouterr().out)["policy_hash"]
    assert load_policy_set([tmp_path]).content_hash == shown  # a milter's policy_dir
    assert await push(admin_client, admin_key, tmp_path, monkeypatch=monkeypatch) == 0
    capsys.readouterr()
    conn = await connect(database_url)
    try:
        sources = await fetch_active_sources(conn)
    finally:
        await conn.close()
    assert load_policy_set_from_sources(sources).content_hash == shown  # database mode
    for name in saved:  # each revision's, as check shows that file's alone
        listed = await admin_client.get(f"/api/v1/policies/{name}/revisions",
                                        headers=bearer(admin_key))
        [revision] = (await listed.json())["revisions"]
        assert policy_cli(["check", "--format", "json", str(tmp_path / f"{name}.yaml")]) == 0
        assert revision["content_hash"] == json.loads(capsys.readouterr().out)["policy_hash"]
