"""AES-256-GCM secrets: round trip, key ids, tamper detection, rotation in the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_admin_api.secrets import (
    BadSecretKey,
    Keyring,
    NoSecretKey,
    SecretsError,
    UnknownSecretKey,
    parse_key_material,
    rotate_secrets,
)
from postwarden_admin_api.settings import load_settings
from postwarden_store import connect

OLD = bytes(range(32))
NEW = bytes(range(1, 33))


def test_round_trip_and_fresh_nonce() -> None:
    keyring = Keyring(OLD)
    first, second = keyring.encrypt("s3cret"), keyring.encrypt("s3cret")
    assert first != second
    assert first.startswith(f"v1:{keyring.current_key_id}:")
    assert "s3cret" not in first
    assert keyring.decrypt(first) == "s3cret"


def test_tampered_or_foreign_values_are_refused() -> None:
    token = Keyring(OLD).encrypt("value")
    version, key_id, blob = token.split(":")
    flipped = blob[:-4] + ("AAAA" if blob[-4:] != "AAAA" else "BBBB")
    with pytest.raises(SecretsError):
        Keyring(OLD).decrypt(f"{version}:{key_id}:{flipped}")
    with pytest.raises(UnknownSecretKey):
        Keyring(NEW).decrypt(token)
    assert Keyring(NEW, older=(OLD,)).decrypt(token) == "value"


def test_no_key_means_no_secret_storage() -> None:
    with pytest.raises(NoSecretKey, match="refusing to store a secret in plain text"):
        Keyring(None).encrypt("value")


@pytest.mark.parametrize("text", [
    pytest.param("00" * 32, id="hex"),
    pytest.param("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", id="base64"),
])
def test_key_material_formats(text: str) -> None:
    assert len(parse_key_material(text)) == 32


@pytest.mark.parametrize("text", ["", "00" * 16, "not base64 at all!", "00" * 33])
def test_bad_key_material(text: str) -> None:
    with pytest.raises(BadSecretKey):
        parse_key_material(text)


async def test_rotate_re_encrypts_every_ciphertext_column(fresh_database_url: str) -> None:
    old, new = Keyring(OLD), Keyring(NEW)
    conn = await connect(fresh_database_url)
    try:
        await conn.execute("CREATE TABLE other_secrets (id int, token_ciphertext text)")
        await conn.execute("INSERT INTO other_secrets VALUES (1, $1), (2, NULL)",
                           old.encrypt("webhook-key"))
        await conn.execute(
            "INSERT INTO runtime_settings (name, value_ciphertext) "
            "VALUES ('recipient_hash_key', $1) "
            "ON CONFLICT (name) DO UPDATE SET value_ciphertext = $1, value = NULL",
            old.encrypt("relay-pw-recipient-hash"))
        assert await rotate_secrets(conn, old, new) == 2
        assert await rotate_secrets(conn, old, new) == 0  # already under the new key
        token = await conn.fetchval("SELECT token_ciphertext FROM other_secrets WHERE id = 1")
        setting = await conn.fetchval("SELECT value_ciphertext FROM runtime_settings")
    finally:
        await conn.close()
    assert new.decrypt(token) == "webhook-key"
    assert new.decrypt(setting) == "relay-pw-recipient-hash"
    with pytest.raises(UnknownSecretKey):
        old.decrypt(setting)


async def test_what_a_running_service_wrote_during_a_rotation_is_read_then_rotated(
    tmp_path: Path, fresh_database_url: str,
) -> None:
    """Between `secrets rotate` and the restart the service still encrypts under the
    old key; restarted with it as previous_secret_key_file, it reads those values, and
    a second `secrets rotate` moves them under the new key."""
    old_file, new_file = tmp_path / "old.key", tmp_path / "new.key"
    old_file.write_text(OLD.hex())
    new_file.write_text(NEW.hex())
    restarted = Keyring.from_settings(load_settings(None, {
        "POSTWARDEN_DATABASE_URL": fresh_database_url,
        "POSTWARDEN_SECRET_KEY_FILE": str(new_file),
        "POSTWARDEN_PREVIOUS_SECRET_KEY_FILE": str(old_file),
    }))
    late = Keyring(OLD).encrypt("written-after-the-rotation")
    assert restarted.decrypt(late) == "written-after-the-rotation"
    assert restarted.current_key_id == Keyring(NEW).current_key_id  # encrypts under the new
    conn = await connect(fresh_database_url)
    try:
        await conn.execute("CREATE TABLE late_secrets (token_ciphertext text)")
        await conn.execute("INSERT INTO late_secrets VALUES ($1)", late)
        assert await rotate_secrets(conn, restarted, Keyring(NEW)) == 1
        token = await conn.fetchval("SELECT token_ciphertext FROM late_secrets")
    finally:
        await conn.close()
    assert Keyring(NEW).decrypt(token) == "written-after-the-rotation"
