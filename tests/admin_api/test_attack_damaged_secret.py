"""A stored secret that cannot be read (damaged base64, too short) is a SecretsError like a
tampered one: the service starts and says so, and ``secrets rotate`` names the column,
rather than a ValueError that stops the service at start-up."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.context import Role
from postwarden_admin_api.secrets import Keyring, SecretsError, rotate_secrets
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient, MintKey, bearer, settings_for

KEY = bytes(range(32))
DAMAGED = {
    "not base64": "###",
    "empty": "",
    "shorter than a nonce": "QUJD",
    "no tag": "QUJDREVGR0hJSktMTU5P",
}


async def _store(database_url: str, token: str) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO runtime_settings (name, value_ciphertext) "
            "VALUES ('recipient_hash_key', $1) "
            "ON CONFLICT (name) DO UPDATE SET value_ciphertext = $1, value = NULL", token)
    finally:
        await conn.close()


@pytest.mark.parametrize("blob", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_value_is_a_secrets_error(blob: str) -> None:
    keyring = Keyring(KEY)
    with pytest.raises(SecretsError, match="failed authentication"):
        keyring.decrypt(f"v1:{keyring.current_key_id}:{blob}")


async def test_the_service_starts_with_a_damaged_secret_and_shows_it_set(
    aiohttp_client: AiohttpClient, database_url: str, mint_key: MintKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_for(database_url)
    current = Keyring.from_settings(settings).current_key_id
    await _store(database_url, f"v1:{current}:###")
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    response = await client.get("/api/v1/settings", headers=bearer(await mint_key(Role.ADMIN)))
    assert response.status == 200
    assert (await response.json())["recipient_hash_key"] == {"is_set": True}
    assert "recipient_hash_key is set but cannot be decrypted here" in caplog.text


async def test_rotation_names_the_value_it_cannot_read_and_changes_nothing(
    fresh_database_url: str,
) -> None:
    old, new = Keyring(KEY), Keyring(bytes(range(1, 33)))
    await _store(fresh_database_url, f"v1:{old.current_key_id}:###")
    conn = await connect(fresh_database_url)
    try:
        await conn.execute("CREATE TABLE other_secrets (token_ciphertext text)")
        await conn.execute("INSERT INTO other_secrets VALUES ($1)", old.encrypt("kept"))
        with pytest.raises(SecretsError, match=r"^runtime_settings\.value_ciphertext: "):
            await rotate_secrets(conn, old, new)
        token = await conn.fetchval("SELECT token_ciphertext FROM other_secrets")
    finally:
        await conn.close()
    assert old.decrypt(token) == "kept"  # the rotation was one transaction: undone
