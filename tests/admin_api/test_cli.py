"""``postwarden-admin``: keys, secrets rotate and policy push, run as the CLI runs; its
help, and --config on either side of a command."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from postwarden_admin_api.bodies import TIME_EXPECTED
from postwarden_admin_api.cli import _push_url, main
from postwarden_admin_api.keys import MAX_GRACE_SECONDS
from postwarden_admin_api.secrets import Keyring, parse_key_material
from postwarden_store import connect
from tests.fixtures.adminapp import TEST_SECRET_KEY, AiohttpClient, MintKey, bearer


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("POSTWARDEN_DATABASE_URL", database_url)
    monkeypatch.setenv("POSTWARDEN_SECRET_KEY", TEST_SECRET_KEY)


def _no_settings_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [v for v in os.environ if v.startswith("POSTWARDEN_")]:
        monkeypatch.delenv(variable)


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
    assert await _cli(["keys", "rotate", key_id, "--grace-seconds", "3600"]) == 0
    new_key = capsys.readouterr().out.strip()
    assert await _cli(["keys", "rotate", key_id, "--grace-seconds", "0"]) == 1
    assert f"rotated to {new_key.split('_')[1]}" in capsys.readouterr().err
    assert await _cli(["keys", "revoke", key_id]) == 0
    assert (await admin_client.get("/api/v1/settings", headers=bearer(key))).status == 401
    assert await _cli(["keys", "revoke", new_key.split("_")[1]]) == 0
    assert (await admin_client.get("/api/v1/settings", headers=bearer(new_key))).status == 401
    assert await _cli(["keys", "revoke", "nonexistent"]) == 1
    assert capsys.readouterr().err == "nonexistent: no such key\n"


@pytest.mark.usefixtures("cli_env")
async def test_a_whole_key_pasted_for_its_id_is_revoked_and_not_echoed(
    capsys: pytest.CaptureFixture[str], admin_client: TestClient[Any, Any]
) -> None:
    # "no active key pw_<id>_<secret>": the key kept working, its secret in the output.
    assert await _cli(["keys", "create", "--role", "operator", "--name", "leaked"]) == 0
    key = capsys.readouterr().out.strip()
    assert await _cli(["keys", "rotate", key, "--grace-seconds", "0"]) == 0
    new_key = capsys.readouterr().out.strip()
    assert await _cli(["keys", "revoke", new_key]) == 0
    assert await _cli(["keys", "revoke", new_key]) == 1
    assert re.fullmatch(f"{new_key.split('_')[1]}: the key was revoked already, at "
                        r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00\n", capsys.readouterr().err)
    for revoked in (key, new_key):
        assert (await admin_client.get("/api/v1/settings", headers=bearer(revoked))).status == 401


OLD_KEYRING = Keyring(parse_key_material(TEST_SECRET_KEY))
HASH_KEY = "cli-recipient-hash-key"
HASH_KEY_TOKEN = "SELECT value_ciphertext FROM runtime_settings WHERE name = 'recipient_hash_key'"


async def _store_hash_key(conn: asyncpg.Connection) -> None:
    """recipient_hash_key HASH_KEY, encrypted under the service's key (TEST_SECRET_KEY)."""
    await conn.execute(
        "INSERT INTO runtime_settings (name, value_ciphertext) "
        "VALUES ('recipient_hash_key', $1) "
        "ON CONFLICT (name) DO UPDATE SET value_ciphertext = $1, value = NULL",
        OLD_KEYRING.encrypt(HASH_KEY))


def _rotate_argv(tmp_path: Path, new_key_hex: str) -> list[str]:
    new_file = tmp_path / "new.key"
    new_file.write_text(new_key_hex)
    return ["secrets", "rotate", "--new-key-file", str(new_file)]


@pytest.mark.usefixtures("cli_env")
async def test_secrets_rotate(tmp_path: Path, database_url: str) -> None:
    conn = await connect(database_url)
    try:
        await _store_hash_key(conn)
        assert await _cli(_rotate_argv(tmp_path, "22" * 32)) == 0
        token = await conn.fetchval(HASH_KEY_TOKEN)
    finally:
        await conn.close()
    assert Keyring(bytes.fromhex("22" * 32)).decrypt(token) == HASH_KEY


REFUSE_AUDIT = """
CREATE FUNCTION pwtest_refuse_audit() RETURNS trigger LANGUAGE plpgsql
    AS $$BEGIN RAISE EXCEPTION 'could not extend file (test)'; END$$;
CREATE TRIGGER pwtest_refuse_audit BEFORE INSERT ON admin_audit
    FOR EACH ROW EXECUTE FUNCTION pwtest_refuse_audit();
"""


@pytest.mark.usefixtures("cli_env")
async def test_a_secrets_rotation_whose_admin_log_entry_fails_rotates_nothing(
        tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The values were re-encrypted and committed before the entry was written: a
    failed write (the database full, or gone, in between) left them under the new key
    with no entry, and the command said it failed, without the line that says to
    point secret_key_file at the new key: a service restarted on the old one read none."""
    conn = await connect(database_url)
    try:
        await _store_hash_key(conn)
        await conn.execute(REFUSE_AUDIT)
        try:
            assert await _cli(_rotate_argv(tmp_path, "33" * 32)) == 1
        finally:
            await conn.execute("DROP TRIGGER pwtest_refuse_audit ON admin_audit; "
                               "DROP FUNCTION pwtest_refuse_audit()")
        token = await conn.fetchval(HASH_KEY_TOKEN)
    finally:
        await conn.close()
    assert capsys.readouterr().err == "postwarden-admin: could not extend file (test)\n"
    assert OLD_KEYRING.decrypt(token) == HASH_KEY


@pytest.mark.usefixtures("cli_env")
async def test_migrate_and_keys_run_without_the_key_file_serve_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Neither uses the key: run where secret_key_file is not (yet), they were refused."""
    monkeypatch.delenv("POSTWARDEN_SECRET_KEY")
    missing = tmp_path / "secret.key"
    monkeypatch.setenv("POSTWARDEN_SECRET_KEY_FILE", str(missing))
    assert await _cli(["migrate"]) == 0
    assert await _cli(["keys", "list"]) == 0
    capsys.readouterr()
    for command in (["serve"], ["secrets", "rotate", "--new-key-file", str(missing)]):
        assert await _cli(command) == 2
        assert f"secret_key_file: cannot read {str(missing)!r}" in capsys.readouterr().err


async def test_policy_push_uploads_and_activates(
    tmp_path: Path, admin_client: TestClient[Any, Any], admin_key: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for name in ("pushed-a", "pushed-b"):
        (policies / f"{name}.yaml").write_text(
            f"version: 1\nname: {name}\nrules:\n  - name: {name}-r\n"
            "    when:\n      sender: [x@evil.test]\n    then: reject\n")
    # As in CI: no database_url, the key only; the service found by --url or `listen`.
    _no_settings_in_environment(monkeypatch)
    monkeypatch.setenv("POSTWARDEN_API_KEY", admin_key)
    config = tmp_path / "admin.yaml"
    config.write_text(f"listen: {admin_client.host}:{admin_client.port}\n")
    assert await _cli(["--config", str(config), "policy", "push", str(policies)]) == 0
    assert capsys.readouterr().out.count("active as revision") == 2
    listed = await (await admin_client.get("/api/v1/policies", headers=bearer(admin_key))).json()
    active = {p["policy_name"] for p in listed["policies"] if p["active_revision"]}
    assert {"pushed-a", "pushed-b"} <= active

    (policies / "pushed-c.yaml").write_text("version: 1\nname: pushed-c\nrules: [\n")
    url = str(admin_client.make_url(""))
    assert await _cli(["policy", "push", str(policies), "--url", url]) == 1
    # Refused before any upload, as `postwarden-policy check` reports it.
    assert capsys.readouterr().err.startswith(f"{policies / 'pushed-c.yaml'}:4:1: YAML syntax")


async def test_policy_push_to_something_that_answers_no_json_says_so_in_one_line(
    tmp_path: Path, aiohttp_client: AiohttpClient, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A proxy's HTML error page (a 502) was a traceback from the JSON decoder."""
    async def bad_gateway(_: web.Request) -> web.Response:
        return web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>",
                            content_type="text/html")

    proxy = web.Application()
    proxy.router.add_post("/api/v1/policies", bad_gateway)
    client = await aiohttp_client(proxy)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text("version: 1\nname: p\n")
    _no_settings_in_environment(monkeypatch)
    monkeypatch.setenv("POSTWARDEN_API_KEY", "pw_x_y")
    url = str(client.make_url(""))
    assert await _cli(["policy", "push", str(policies), "--url", url]) == 1
    err = capsys.readouterr().err
    assert "answered 502 without JSON" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("before", [True, False])
def test_invalid_settings_are_listed_one_per_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    before: bool,
) -> None:
    """--config goes before the command or after it."""
    config = tmp_path / "postwarden.yaml"
    config.write_text("database_url: postgresql:///x\nlisten: nowhere\n")
    monkeypatch.setenv("POSTWARDEN_RELAY_WORKERS", "0")
    given = ["--config", str(config)]
    assert main([*given, "serve"] if before else ["serve", *given]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "postwarden-admin: invalid settings:",
        f"  {config}:2: listen: expected HOST:PORT",
        "  POSTWARDEN_RELAY_WORKERS: relay_workers: must be at least 1",
    ]


@pytest.mark.parametrize(("command", "subcommands"), [
    ([], ["serve", "migrate", "keys", "secrets", "policy"]),
    (["keys"], ["create", "list", "revoke", "rotate"]),
    (["secrets"], ["rotate"]),
    (["policy"], ["push"]),
])
def test_every_command_is_explained_in_help(
    command: list[str], subcommands: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    for name in subcommands:
        assert re.search(rf"^    {name} +\w", shown, re.MULTILINE), f"{name} has no help"


@pytest.mark.usefixtures("cli_env")
async def test_keys_list_tells_expired_and_revoked_keys_from_active_ones(
    mint_key: MintKey, capsys: pytest.CaptureFixture[str]
) -> None:
    now = dt.datetime.now(dt.UTC)
    keys = {
        "active": await mint_key("auditor", expires_at=now + dt.timedelta(days=1)),
        "expired": await mint_key("auditor", expires_at=now - dt.timedelta(seconds=1)),
        "revoked": await mint_key("auditor"),
    }
    assert await _cli(["keys", "revoke", keys["revoked"].split("_")[1]]) == 0
    capsys.readouterr()
    assert await _cli(["keys", "list"]) == 0
    states = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()}
    assert {state: states[key.split("_")[1]] for state, key in keys.items()} == {
        state: state for state in keys}



def skewed_clock(skew: dt.timedelta) -> SimpleNamespace:
    """A datetime module whose clock is ``skew`` off the database's: this machine's, as
    a module reading ``dt.datetime.now()`` sees it once patched in as its ``dt``."""
    class Skewed(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Any:
            return dt.datetime.now(tz) + skew

    return SimpleNamespace(datetime=Skewed, UTC=dt.UTC, timedelta=dt.timedelta)


@pytest.mark.usefixtures("cli_env")
async def test_keys_list_reads_expiry_by_the_databases_clock(
    mint_key: MintKey, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    admin_client: TestClient[Any, Any],
) -> None:
    """Authentication reads expiry by the database's clock: with this machine's clock two
    hours fast, a key expiring in an hour works, and was listed as expired."""
    key = await mint_key("auditor", expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert (await admin_client.get("/api/v1/audit", headers=bearer(key))).status == 200
    monkeypatch.setattr("postwarden_admin_api.cli.dt", skewed_clock(dt.timedelta(hours=2)))
    assert await _cli(["keys", "list"]) == 0
    states = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()}
    assert states[key.split("_")[1]] == "active"

@pytest.mark.parametrize("grace", ["-1", str(MAX_GRACE_SECONDS + 1), "1.5", "day"])
def test_rotate_takes_the_apis_grace_period_bounds(
    grace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["keys", "rotate", "abc", "--grace-seconds", grace])
    assert exited.value.code == 2
    assert f"--grace-seconds: '{grace}': expected a whole number of seconds from 0 to " \
        f"{MAX_GRACE_SECONDS}" in capsys.readouterr().err


@pytest.mark.parametrize(("listen", "url"), [
    ("127.0.0.1:8025", "http://127.0.0.1:8025"),
    ("[::1]:8025", "http://[::1]:8025"),
    ("::1:8025", "http://[::1]:8025"),  # was http://::1:8025, "expected ... http://host:port"
])
def test_push_goes_to_the_listen_address_in_either_ipv6_form(
    listen: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_settings_in_environment(monkeypatch)
    monkeypatch.setenv("POSTWARDEN_LISTEN", listen)
    assert _push_url(argparse.Namespace(url=None, config=None)) == url


@pytest.mark.usefixtures("cli_env")
async def test_rotate_takes_the_longest_grace_period_the_api_takes(
    mint_key: MintKey, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key_id = (await mint_key("auditor")).split("_")[1]
    assert await _cli(["keys", "rotate", key_id, "--grace-seconds", str(MAX_GRACE_SECONDS)]) == 0
    conn = await connect(database_url)
    try:
        left = await conn.fetchval(
            "SELECT expires_at - now() FROM api_keys WHERE key_id = $1", key_id)
    finally:
        await conn.close()
    assert dt.timedelta(days=29) < left <= dt.timedelta(days=30)


@pytest.mark.usefixtures("cli_env")
async def test_create_checks_and_lower_cases_senders_as_the_api_does(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        await _cli(["keys", "create", "--role", "sender", "--name", "app", "--sender", "billing"])
    assert exited.value.code == 2
    assert "--sender: 'billing': expected an address" in capsys.readouterr().err
    assert await _cli(["keys", "create", "--role", "sender", "--name", "app",
                       "--sender", "Billing@Example.COM", "--sender", "*@Shop.Example"]) == 0
    key_id = capsys.readouterr().out.split("_")[1]
    conn = await connect(database_url)
    try:
        senders = await conn.fetchval(
            "SELECT allowed_senders FROM api_keys WHERE key_id = $1", key_id)
    finally:
        await conn.close()
    assert senders == ["billing@example.com", "*@shop.example"]


@pytest.mark.usefixtures("cli_env")
async def test_create_refuses_senders_the_role_cannot_use_as_the_api_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await _cli(["keys", "create", "--role", "sender", "--name", "mute"]) == 1
    assert "--sender: a sender key sends only as its allowed senders: give at least one" \
        in capsys.readouterr().err
    assert await _cli(["keys", "create", "--role", "operator", "--name", "ops",
                       "--sender", "a@b.example"]) == 1
    assert "--sender: only sender and admin keys send: an operator key takes none" \
        in capsys.readouterr().err


@pytest.mark.usefixtures("cli_env")
async def test_key_commands_are_in_the_admin_log_as_the_api_names_them(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    """A search of the admin log by action (key.created...) finds the CLI's too."""
    assert await _cli(["keys", "create", "--role", "auditor", "--name", "logged"]) == 0
    key_id = capsys.readouterr().out.strip().split("_")[1]
    assert await _cli(["keys", "rotate", key_id, "--grace-seconds", "0"]) == 0
    new_id = capsys.readouterr().out.strip().split("_")[1]
    assert await _cli(["keys", "revoke", new_id]) == 0
    conn = await connect(database_url)
    try:
        actions = [row["action"] for row in await conn.fetch(
            "SELECT action FROM admin_audit WHERE key_id = 'cli' AND target = ANY($1) "
            "ORDER BY id", [key_id, new_id])]
    finally:
        await conn.close()
    assert actions == ["key.created", "key.rotated", "key.revoked"]


@pytest.mark.parametrize(("option", "value", "problem"), [
    pytest.param("--name", "", "expected 1..200 characters", id="empty-name"),
    pytest.param("--name", "   ", "expected 1..200 characters", id="blank-name"),
    pytest.param("--name", "x" * 201, "expected 1..200 characters", id="long-name"),
    # Stored as -infinity, read back naive: `keys list` then failed with a traceback.
    pytest.param("--expires-at", "0001-01-01", TIME_EXPECTED, id="year-1"),
    pytest.param("--expires-at", "9999-12-31T23:59:59-05:00", TIME_EXPECTED, id="year-10000"),
    pytest.param("--expires-at", "2020-01-01", "must be in the future: the key would never work",
                 id="past"),
])
def test_create_refuses_what_the_api_refuses(
    option: str, value: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["keys", "create", "--role", "admin", "--name", "ops", option, value]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert f"{option}: {value!r}: {problem}" in capsys.readouterr().err


@pytest.mark.usefixtures("cli_env")
async def test_create_refuses_an_expiry_past_by_the_databases_clock(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With this machine's clock two hours slow, an expiry an hour ago was taken, and the
    key was refused from its first use."""
    monkeypatch.setattr("postwarden_admin_api.keys.dt", skewed_clock(-dt.timedelta(hours=2)))
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    assert await _cli(["keys", "create", "--role", "auditor", "--name", "late",
                       "--expires-at", past]) == 1
    out, err = capsys.readouterr()
    assert "--expires-at: must be in the future: the key would never work" in err
    assert out == ""


@pytest.mark.usefixtures("cli_env")
async def test_create_reads_a_time_without_an_offset_as_utc_as_the_api_does(
    monkeypatch: pytest.MonkeyPatch, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was the machine's local time: 12:00 meant 17:00 UTC in New York in winter."""
    monkeypatch.setenv("TZ", "America/New_York")
    assert await _cli(["keys", "create", "--role", "admin", "--name", " ny ",
                       "--expires-at", "2040-01-01T12:00"]) == 0
    key_id = capsys.readouterr().out.split("_")[1]
    conn = await connect(database_url)
    try:
        row = await conn.fetchrow("SELECT name, expires_at FROM api_keys WHERE key_id = $1",
                                  key_id)
    finally:
        await conn.close()
    assert row["name"] == "ny"
    assert row["expires_at"] == dt.datetime(2040, 1, 1, 12, tzinfo=dt.UTC)


@pytest.mark.usefixtures("cli_env")
async def test_a_key_name_holds_no_control_character(
    capsys: pytest.CaptureFixture[str], admin_client: TestClient[Any, Any], admin_key: str,
    database_url: str,
) -> None:
    """`keys list` prints names to a terminal: an escape sequence in one (ESC [ 2 J clears
    the screen) acted there. Refused now; one stored before is printed escaped."""
    response = await admin_client.post("/api/v1/keys", headers=bearer(admin_key),
                                       json={"role": "auditor", "name": "ci\x1b[2J"})
    assert response.status == 422
    assert (await response.json())["error"]["details"] == [
        {"field": "name", "message": "control, invisible and bidi characters are not allowed"}]
    with pytest.raises(SystemExit):
        main(["keys", "create", "--role", "auditor", "--name", "ci\x1b[2J"])
    assert await _cli(["keys", "create", "--role", "auditor", "--name", "old"]) == 0
    key_id = capsys.readouterr().out.strip().split("_")[1]
    conn = await connect(database_url)
    try:
        await conn.execute("UPDATE api_keys SET name = 'old\x1b[2J\x9b' WHERE key_id = $1",
                           key_id)
    finally:
        await conn.close()
    assert await _cli(["keys", "list"]) == 0
    [listed] = [line for line in capsys.readouterr().out.splitlines() if key_id in line]
    assert listed.endswith("old\\x1b[2J\\x9b")


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize("command", [["create", "--role", "admin", "--name", "unlogged"],
                                     ["rotate", "{key_id}"], ["revoke", "{key_id}"]])
async def test_a_key_change_whose_admin_log_entry_fails_is_not_kept_nor_printed(
    database_url: str, mint_key: MintKey, capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    """The key and its entry were two statements: a failure between them left a key
    (printed, working) that the admin log never showed."""
    key_id = (await mint_key("operator")).split("_")[1]
    conn = await connect(database_url)
    try:
        await conn.execute("""
            CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'admin log unavailable'; END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON admin_audit EXECUTE FUNCTION refuse();
        """)
        before = await conn.fetch("SELECT key_id, revoked_at, expires_at FROM api_keys")
        argv = ["keys", *(part.format(key_id=key_id) for part in command)]
        assert await _cli(argv) == 1
        assert await conn.fetch("SELECT key_id, revoked_at, expires_at FROM api_keys") == before
        out, err = capsys.readouterr()
        assert "pw_" not in out
        assert "admin log unavailable" in err
    finally:
        await conn.execute("DROP TRIGGER refuse ON admin_audit; DROP FUNCTION refuse()")
        await conn.close()
