"""The development fallback key is opt-in (``development_key``, off by default and in the
example settings): after the documented install (migrate, then start, no key made yet)
no local account may mint itself an admin key with `dev-admin-key`. Its rules when on:
tests/admin_api/test_dev_fallback.py."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import yaml

from postwarden_admin_api.app import create_app
from postwarden_admin_api.settings import load_settings
from postwarden_policies.settings_source import SettingsError
from postwarden_store import connect
from tests.fixtures.adminapp import AiohttpClient, bearer, settings_for

ROOT = Path(__file__).resolve().parents[2]
DEV = bearer("dev-admin-key")
DATABASE_URL = "postgresql://postwarden@127.0.0.1/postwarden"


@pytest.mark.postgres
async def test_by_default_it_is_refused_from_loopback_with_no_key(
    aiohttp_client: AiohttpClient, fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(create_app(settings_for(fresh_database_url)))
    with caplog.at_level(logging.WARNING, logger="postwarden_admin_api.auth"):
        minted = await client.post("/api/v1/keys", headers=DEV,
                                   json={"role": "admin", "name": "definitely-ops"})
        listed = await client.get("/api/v1/keys", headers=DEV)
    for response in (minted, listed):
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthenticated"
    assert not [r for r in caplog.records if "development fallback" in r.getMessage()]
    conn = await connect(fresh_database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM api_keys") == 0
    finally:
        await conn.close()


@pytest.mark.parametrize(("value", "on"), [
    pytest.param(None, False, id="unset"),
    pytest.param("true", True, id="true"),
    pytest.param("True", True, id="capitalised"),
    pytest.param("false", False, id="false"),
])
def test_the_environment_variable_turns_it_on(value: str | None, on: bool) -> None:
    environ = {"POSTWARDEN_DATABASE_URL": DATABASE_URL}
    if value is not None:
        environ["POSTWARDEN_DEVELOPMENT_KEY"] = value
    assert load_settings(None, environ).development_key is on


@pytest.mark.parametrize("value", ["yes", "1", "on"])  # "": test_settings_values
def test_only_true_or_false_is_taken(value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {"POSTWARDEN_DATABASE_URL": DATABASE_URL,
                             "POSTWARDEN_DEVELOPMENT_KEY": value})
    assert refused.value.problems == [
        "POSTWARDEN_DEVELOPMENT_KEY: development_key: expected true or false"]


def test_the_example_settings_keep_it_off() -> None:
    example = ROOT / "contrib" / "postwarden-admin.example.yaml"
    assert yaml.safe_load(example.read_text(encoding="utf-8"))["development_key"] is False


def test_the_systemd_install_makes_an_admin_key_before_starting_the_service() -> None:
    text = (ROOT / "contrib" / "systemd" / "README.md").read_text(encoding="utf-8")
    create = re.search(r"postwarden-admin .*\\\n\s*keys create --role admin", text)
    start = text.find("systemctl enable --now")
    assert create is not None and start != -1
    assert create.start() < start
