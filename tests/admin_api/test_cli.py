"""``postwarden-admin``: keys, secrets rotate and policy push, run as the CLI runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.cli import main
from postwarden_admin_api.secrets import Keyring, parse_key_material
from postwarden_store import connect
from tests.fixtures.adminapp import TEST_SECRET_KEY, bearer


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("POSTWARDEN_DATABASE_URL", database_url)
    monkeypatch.setenv("POSTWARDEN_SECRET_KEY", TEST_SECRET_KEY)


async def _cli(argv: list[str]) -> int:
    # The CLI runs its own event loop; keep it off the test's loop.
    return await asyncio.to_thread(main, argv)


@pytest.mark.usefixtures("cli_env")
async def test_keys_create_list_rotate_revoke(
    capsys: pytest.CaptureFixture[str], admin_client: TestClient[Any, Any]
) -> None:
    assert await _cli(["keys", "create", "--role", "operator", "--name", "ci"]) == 0
    key = capsys.readouterr().out.strip()
    key_id = key.split("_")[1]
    assert (await admin_client.get("/api/v1/settings", headers=bearer(key))).status == 200
    assert await _cli(["keys", "list"]) == 0
    assert key_id in capsys.readouterr().out
    assert await _cli(["keys", "rotate", key_id, "--grace-seconds", "0"]) == 0
    new_key = capsys.readouterr().out.strip()
    assert (await admin_client.get("/api/v1/settings", headers=bearer(key))).status == 401
    assert await _cli(["keys", "revoke", new_key.split("_")[1]]) == 0
    assert (await admin_client.get("/api/v1/settings", headers=bearer(new_key))).status == 401
    assert await _cli(["keys", "revoke", "nonexistent"]) == 1


@pytest.mark.usefixtures("cli_env")
async def test_secrets_rotate(tmp_path: Path, database_url: str) -> None:
    old = Keyring(parse_key_material(TEST_SECRET_KEY))
    conn = await connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO runtime_settings (name, value_ciphertext) "
            "VALUES ('recipient_hash_key', $1) "
            "ON CONFLICT (name) DO UPDATE SET value_ciphertext = $1, value = NULL",
            old.encrypt("pw"))
        new_file = tmp_path / "new.key"
        new_file.write_text("22" * 32)
        assert await _cli(["secrets", "rotate", "--new-key-file", str(new_file)]) == 0
        token = await conn.fetchval(
            "SELECT value_ciphertext FROM runtime_settings WHERE name = 'recipient_hash_key'")
    finally:
        await conn.close()
    assert Keyring(bytes.fromhex("22" * 32)).decrypt(token) == "pw"


async def test_policy_push_uploads_and_activates(
    tmp_path: Path, admin_client: TestClient[Any, Any], admin_key: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("pushed-a", "pushed-b"):
        (tmp_path / f"{name}.yaml").write_text(
            f"version: 1\nname: {name}\nrules:\n  - name: {name}-r\n"
            "    when:\n      sender: [x@evil.test]\n    then: reject\n")
    monkeypatch.setenv("POSTWARDEN_DATABASE_URL", "postgresql://unused/")
    monkeypatch.setenv("POSTWARDEN_API_KEY", admin_key)
    url = str(admin_client.make_url(""))
    assert await _cli(["policy", "push", str(tmp_path), "--url", url]) == 0
    assert capsys.readouterr().out.count("active as revision") == 2
    listed = await (await admin_client.get("/api/v1/policies", headers=bearer(admin_key))).json()
    active = {p["policy_name"] for p in listed["policies"] if p["active_revision"]}
    assert {"pushed-a", "pushed-b"} <= active

    (tmp_path / "pushed-c.yaml").write_text("version: 1\nname: pushed-c\nrules: [\n")
    assert await _cli(["policy", "push", str(tmp_path), "--url", url]) == 1
    assert "pushed-c.yaml: refused (422)" in capsys.readouterr().err


def test_invalid_settings_are_listed_one_per_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "postwarden.yaml"
    config.write_text("database_url: postgresql:///x\nlisten: nowhere\n")
    monkeypatch.setenv("POSTWARDEN_RELAY_WORKERS", "0")
    assert main(["--config", str(config), "serve"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "postwarden-admin: invalid settings:",
        f"  {config}:2: listen: expected HOST:PORT",
        "  POSTWARDEN_RELAY_WORKERS: relay_workers: must be at least 1",
    ]
