"""Runtime settings over the API, secrets write-only and encrypted, process settings."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.runtime_settings import load_runtime_settings
from postwarden_admin_api.secrets import Keyring
from postwarden_admin_api.settings import load_settings
from postwarden_policies.settings_source import SettingsError
from postwarden_store import connect
from tests.fixtures.adminapp import TEST_SECRET_KEY, AiohttpClient, MintKey, bearer, settings_for

SECRET = "hunter2-very-secret-relay-password"


async def test_put_validates_every_field(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    response = await admin_client.put("/api/v1/settings", headers=bearer(admin_key), json={
        "outbound_enabled": "yes", "outbound_max_recipients": 0,
        "allowed_sender_addresses": ["not an address"], "no_such_setting": 1,
        "recipient_hash_key": "",
    })
    assert response.status == 422
    body = await response.json()
    assert body["error"]["code"] == "validation_failed"
    assert {d["field"] for d in body["error"]["details"]} == {
        "outbound_enabled", "outbound_max_recipients", "allowed_sender_addresses",
        "no_such_setting", "recipient_hash_key",
    }


async def test_put_and_get_typed_values(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str
) -> None:
    response = await admin_client.put("/api/v1/settings", headers=bearer(admin_key), json={
        "outbound_enabled": False, "allowed_sender_addresses": ["App@Example.com", "*@corp.test"],
        "outbound_per_key_per_minute": 7,
    })
    assert response.status == 200
    shown = await (await admin_client.get("/api/v1/settings", headers=bearer(admin_key))).json()
    assert shown["outbound_enabled"] is False
    assert shown["allowed_sender_addresses"] == ["app@example.com", "*@corp.test"]
    conn = await connect(database_url)
    try:
        runtime = await load_runtime_settings(conn)
    finally:
        await conn.close()
    assert runtime.outbound_per_key_per_minute == 7
    assert runtime.allowed_sender_addresses == ("app@example.com", "*@corp.test")
    assert runtime.outbound_max_recipients == 50

    reset = await admin_client.put("/api/v1/settings", headers=bearer(admin_key),
                                   json={"outbound_enabled": None})
    assert (await reset.json())["outbound_enabled"] is True


async def test_secret_is_write_only_encrypted_and_never_logged(
    admin_client: TestClient[Any, Any], admin_key: str, database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    response = await admin_client.put("/api/v1/settings", headers=bearer(admin_key),
                                      json={"recipient_hash_key": SECRET})
    seen.append(await response.text())
    assert response.status == 200
    assert (await response.json())["recipient_hash_key"] == {"is_set": True}
    for path in ("/api/v1/settings", "/api/v1/admin-audit", "/metrics"):
        seen.append(await (await admin_client.get(path, headers=bearer(admin_key))).text())
    conn = await connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT value_ciphertext FROM runtime_settings WHERE name = 'recipient_hash_key'")
        audit = await conn.fetchval(
            "SELECT summary FROM admin_audit WHERE action = 'settings.changed' "
            "ORDER BY id DESC LIMIT 1")
    finally:
        await conn.close()
    keyring = Keyring.from_settings(settings_for(database_url))
    assert keyring.decrypt(stored) == SECRET
    assert stored.startswith(f"v1:{keyring.current_key_id}:")
    assert audit == {"recipient_hash_key": "<set>"}
    assert SECRET not in stored
    assert all(SECRET not in text for text in seen)
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert SECRET not in caplog.text


async def test_a_short_recipient_hash_key_is_refused_without_its_value(
    admin_client: TestClient[Any, Any], admin_key: str
) -> None:
    """A one-character key ("Q") made the recipient hashes in the counters easy to reverse:
    trying every short key with likely addresses finds both."""
    for short in ("Q", "fifteen-chars!!"):
        response = await admin_client.put("/api/v1/settings", headers=bearer(admin_key),
                                          json={"recipient_hash_key": short})
        assert response.status == 422
        text = await response.text()
        assert (await response.json())["error"]["details"] == [{
            "field": "recipient_hash_key",
            "message": "expected a string of at least 16 characters (a random one)"}]
        assert short not in text
    response = await admin_client.put("/api/v1/settings", headers=bearer(admin_key),
                                      json={"recipient_hash_key": "sixteen-chars!!!"})
    assert response.status == 200


async def test_a_short_recipient_hash_key_stored_before_is_told_at_start(
    aiohttp_client: AiohttpClient, fresh_database_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """One stored before the API refused it is still used (refusing it would stop the
    sending), and the log says to replace it, without its value."""
    settings = settings_for(fresh_database_url)
    conn = await connect(fresh_database_url)
    try:
        await conn.execute("INSERT INTO runtime_settings (name, value_ciphertext) "
                           "VALUES ('recipient_hash_key', $1)",
                           Keyring.from_settings(settings).encrypt("tiny-key"))
    finally:
        await conn.close()
    await aiohttp_client(create_app(settings))
    assert "recipient_hash_key is shorter than 16 characters" in caplog.text
    assert "tiny-key" not in caplog.text


async def test_operator_may_not_set_secrets(
    admin_client: TestClient[Any, Any], mint_key: MintKey
) -> None:
    operator = await mint_key(Role.OPERATOR)
    response = await admin_client.put("/api/v1/settings", headers=bearer(operator),
                                      json={"recipient_hash_key": SECRET})
    assert response.status == 403
    # Each detail says what is wrong with its field, as every other refusal's does.
    assert (await response.json())["error"]["details"] == [{
        "field": "recipient_hash_key",
        "message": "a secret setting: only an admin key may change it"}]
    response = await admin_client.put("/api/v1/settings", headers=bearer(operator),
                                      json={"outbound_max_recipients": 40})
    assert response.status == 200


async def test_only_admins_may_shorten_audit_retention(
    admin_client: TestClient[Any, Any], mint_key: MintKey, admin_key: str
) -> None:
    operator = bearer(await mint_key(Role.OPERATOR))

    async def put(headers: dict[str, str], days: int | None, current: int = 0) -> int:
        response = await admin_client.put("/api/v1/settings", headers=headers,
                                          json={"audit_retention_days": days})
        if response.status == 403:
            error = (await response.json())["error"]
            assert (error["code"], error["details"]) == ("forbidden", [{
                "field": "audit_retention_days",
                "message": f"shorter than the current {current} days, which drops audit "
                           "months for good: only an admin key may"}])
        return response.status

    assert await put(operator, 90, current=180) == 403  # below the default 180
    assert await put(operator, 365) == 200  # longer: keeps more
    assert await put(operator, 365) == 200  # the same
    assert await put(operator, None, current=365) == 403  # the default again: 180 < 365
    assert await put(bearer(admin_key), 30) == 200
    shown = await (await admin_client.get("/api/v1/settings", headers=operator)).json()
    assert shown["audit_retention_days"] == 30


async def test_storing_a_secret_without_a_key_fails_clearly(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey
) -> None:
    stored = "SELECT value, value_ciphertext FROM runtime_settings WHERE name = $1"
    client = await aiohttp_client(create_app(settings_for(database_url, secret_key=None)))
    admin = await mint_key(Role.ADMIN)
    conn = await connect(database_url)
    try:
        before = await conn.fetchrow(stored, "recipient_hash_key")
        response = await client.put("/api/v1/settings", headers=bearer(admin),
                                    json={"recipient_hash_key": SECRET})
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "secret_key_not_configured"
        after = await conn.fetchrow(stored, "recipient_hash_key")
        assert after == before  # nothing written, least of all in plain text
        assert SECRET not in str(after)
    finally:
        await conn.close()


def test_process_settings_from_file_and_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(TEST_SECRET_KEY + "\n")
    config = tmp_path / "admin.yaml"
    config.write_text(f"listen: 127.0.0.1:9000\nsecret_key_file: {key_file}\n"
                      "webhook_allowed_networks: [10.1.0.0/16]\n")
    settings = load_settings(config, {
        "POSTWARDEN_DATABASE_URL": "postgresql://u:pw@127.0.0.1/db",
        "POSTWARDEN_LISTEN": "127.0.0.1:9100",
        "POSTWARDEN_MAX_REQUEST_BODY_BYTES": "2048",
        "POSTWARDEN_MAILLOG_HOST": "mail-1",
    })
    assert settings.maillog_host == "mail-1"
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 9100)
    assert settings.max_request_body_bytes == 2048
    assert settings.webhook_allowed_networks == ("10.1.0.0/16",)
    assert settings.secret_key is not None and settings.secret_key.reveal() == TEST_SECRET_KEY
    assert TEST_SECRET_KEY not in repr(settings) and "pw@" not in repr(settings)


def test_process_settings_report_every_problem(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="database_url"):
        load_settings(None, {})
    with pytest.raises(SettingsError) as info:
        load_settings(None, {"POSTWARDEN_DATABASE_URL": "postgresql:///x",
                             "POSTWARDEN_LISTEN": "nowhere", "POSTWARDEN_RELAY_PORT": "0",
                             "POSTWARDEN_MAILLOG_HOST": "mail 1"})
    assert info.value.problems == [
        "POSTWARDEN_LISTEN: listen: expected HOST:PORT",
        "POSTWARDEN_RELAY_PORT: relay_port: must be at least 1",
        "POSTWARDEN_MAILLOG_HOST: maillog_host: expected a name without spaces"]
    config = tmp_path / "postwarden.yaml"
    config.write_text("database_url: postgresql://u:hunter22@db/x\nlisten: 127.0.0.1:9100\n"
                      "pool_max_size: many\n")
    with pytest.raises(SettingsError) as info:
        load_settings(config, {})
    assert info.value.problems == [
        f"{config}:3: pool_max_size: 'many' is not a number"]
    assert "hunter22" not in str(info.value)
    with pytest.raises(SettingsError) as info:
        load_settings(None, {"POSTWARDEN_DATABASE_URL": "postgres ql://u:hunter22@@db"})
    assert info.value.problems == ["POSTWARDEN_DATABASE_URL: database_url: expected "
                                   "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"]


def test_the_files_keys_are_told_with_the_values(tmp_path: Path) -> None:
    """An unknown key was refused before any value was read, as in the milter's."""
    config = tmp_path / "admin.yaml"
    config.write_text("listen: nowhere\nlistne: 127.0.0.1:9000\npool_max_size: 1e-400\n")
    with pytest.raises(SettingsError) as refused:
        load_settings(config, {"POSTWARDEN_DATABASE_URL": "postgresql://u@127.0.0.1/db",
                               "POSTWARDEN_RELAY_PORT": "0"})
    assert refused.value.problems == [
        f"{config}:2: unknown setting 'listne' (did you mean listen?)",
        f"{config}:3: pool_max_size: '1e-400' is too small (it rounds to 0)",
        f"{config}:1: listen: expected HOST:PORT",
        "POSTWARDEN_RELAY_PORT: relay_port: must be at least 1"]


def test_a_setting_given_twice_in_the_file_is_refused(tmp_path: Path) -> None:
    """YAML would keep the second without a word; the milter's reader refuses it too."""
    config = tmp_path / "admin.yaml"
    config.write_text("listen: 127.0.0.1:9000\nlog_level: INFO\nlisten: 0.0.0.0:9000\n")
    with pytest.raises(SettingsError) as refused:
        load_settings(config, {"POSTWARDEN_DATABASE_URL": "postgresql://u@127.0.0.1/db"})
    assert refused.value.problems == [f"{config}:3: 'listen' set twice (first at line 1)"]
