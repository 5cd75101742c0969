"""`postwarden-milter`'s command line: the commands its usage names, --config on either
side of a command, and `migrate` on the milter's own settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from postwarden_milter.cli import main
from postwarden_store.migrations import available_migrations
from tests.conftest import PgServer
from tests.fixtures.ports import free_port
from tests.milter.test_process import _run, empty_database  # noqa: F401 - a fixture

PASSWORD = "s3cret-pw"


def test_the_usage_line_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert "check" in usage and "migrate" in usage


def _config(tmp_path: Path, **settings: str) -> Path:
    (tmp_path / "policies").mkdir(exist_ok=True)
    (tmp_path / "policies" / "main.yaml").write_text("version: 1\nname: main\n")
    config = tmp_path / "postwarden.yaml"
    config.write_text("".join(f"{name}: {value}\n" for name, value in {
        "policy_dir": tmp_path / "policies", "spool_dir": tmp_path / "spool", **settings,
    }.items()))
    return config


@pytest.mark.parametrize("before", [True, False])
def test_config_goes_before_or_after_check(
    tmp_path: Path, before: bool, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for variable in [v for v in os.environ if v.startswith("POSTWARDEN_")]:
        monkeypatch.delenv(variable)
    config = str(_config(tmp_path))
    argv = ["--config", config, "check"] if before else ["check", "--config", config]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"settings: ok ({config})"


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}


@pytest.mark.postgres
def test_migrate_takes_the_database_from_the_settings(
    tmp_path: Path, pg_server: PgServer,
    empty_database: str,  # noqa: F811 - the imported fixture
) -> None:
    config = str(_config(tmp_path, database_url=empty_database))
    env = _environment()
    listed = _run(["migrate", "--config", config, "--dry-run"], env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [f"pending {m.version}" for m in available_migrations()]
    # --database-url wins over the file: this one cannot be reached.
    away = f"postgresql://postwarden@127.0.0.1:{free_port()}/x"
    refused = _run(["--config", config, "migrate", "--database-url", away], env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("postwarden-milter migrate: ")
    assert PASSWORD not in refused.stdout + refused.stderr
    no_such = _run(["migrate", "--database-url", pg_server.dsn("pwtest_gone")], env)
    assert no_such.returncode == 1  # said in one line, no traceback
    assert no_such.stderr == ('postwarden-milter migrate: database_url: the server refuses it: '
                              'database "pwtest_gone" does not exist\n')
    migrated = _run(["migrate"], {**env, "POSTWARDEN_CONFIG": config})
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 0001_audit" in migrated.stdout
    from_environment = _run(["migrate"], {**env, "POSTWARDEN_DATABASE_URL": empty_database})
    assert from_environment.stdout == "schema is current\n"


def test_migrate_tells_a_bad_or_missing_database_url_without_its_password(
    tmp_path: Path
) -> None:
    config = _config(tmp_path, database_url=f"mysql://postwarden:{PASSWORD}@db/x")
    bad = _run(["--config", str(config), "migrate"], _environment())
    assert bad.returncode == 2
    assert f"{config}:3: database_url: expected postgresql://" in bad.stderr
    assert PASSWORD not in bad.stdout + bad.stderr
    unset = _run(["migrate"], _environment())
    assert unset.returncode == 2
    assert "database_url: not set" in unset.stderr
    # As a start takes it: the space was migrate's database "x " ("does not exist").
    url = f"postgresql://postwarden:{PASSWORD}@127.0.0.1/x "
    spaced = _run(["migrate"], {**_environment(), "POSTWARDEN_DATABASE_URL": url})
    assert spaced.returncode == 2
    assert spaced.stderr.splitlines()[-1] == ("  POSTWARDEN_DATABASE_URL: database_url: starts "
                                              "or ends with white space (a space, tab or "
                                              "newline): remove it")


def test_check_tells_a_database_url_the_client_refuses_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Options that pass the settings' checks but that asyncpg refuses when it connects
    (verify-full with no root certificate in the user's ~/.postgresql) stop the start in
    one line, exit 2: they are no outage to spool through."""
    for variable in [v for v in os.environ if v.startswith(("POSTWARDEN_", "PGSSL"))]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.postgresql/root.crt
    url = f"postgresql://postwarden:{PASSWORD}@127.0.0.1:{free_port()}/x?sslmode=verify-full"
    config = str(_config(tmp_path, database_url=f"'{url}'"))
    assert main(["check", "--config", config]) == 2
    err = capsys.readouterr().err
    assert err.startswith("postwarden-milter: database_url: the Postgres client refuses it: ")
    assert "root certificate" in err and len(err.splitlines()) == 1
    assert PASSWORD not in err


@pytest.mark.postgres
def test_a_database_never_migrated_is_told_so_in_a_short_line(
    tmp_path: Path, empty_database: str,  # noqa: F811 - the imported fixture
) -> None:
    """It named every migration, fifty and more, in one line the unit's restarts (exit 1,
    every 2 s) repeated in the journal."""
    config = str(_config(tmp_path, database_url=empty_database))
    for command, status in (["check"], 2), ([], 1):
        result = _run(["--config", config, *command], _environment())
        assert result.returncode == status, result.stderr
        told = [line for line in result.stderr.splitlines() if "schema" in line]
        assert told == ["postwarden-milter: the database has no postwarden schema (never "
                        "migrated); run `postwarden-store migrate` (or `postwarden-milter "
                        "migrate`)"]
