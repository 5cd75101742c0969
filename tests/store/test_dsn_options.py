"""A database URL's query parameters, checked at start as asyncpg would take them at
connect: a typo (``?sslmode=requre``) is told at start, naming the setting and never
the password, with the config exit code, not as asyncpg's traceback on every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from postwarden_store import dsn_problem
from tests.conftest import PgServer

PASSWORD = "Sup3rS3cretPW"
GOOD = [
    pytest.param("sslmode=disable", id="sslmode-disable"),
    pytest.param("sslmode=prefer", id="sslmode-prefer"),
    pytest.param("sslmode=allow&ssl_min_protocol_version=TLSv1.2", id="tls-version"),
    pytest.param("target_session_attrs=read-write", id="target-session-attrs"),
    pytest.param("gsslib=gssapi", id="gsslib"),
    pytest.param("application_name=postwarden", id="a-server-setting"),
    pytest.param("options=-c%20statement_timeout%3D5000", id="options"),
]
BAD = [
    pytest.param("sslmode=requre", "sslmode", id="sslmode-typo"),
    pytest.param("sslmode=bogus", "sslmode", id="sslmode-bogus"),
    pytest.param("target_session_attrs=master", "target_session_attrs", id="session-attrs"),
    pytest.param("gsslib=kerberos", "gsslib", id="gsslib"),
    pytest.param("ssl_min_protocol_version=TLSv9", "ssl_min_protocol_version",
                 id="tls-version"),
    pytest.param("sslnegotiation=tls", "sslnegotiation", id="sslnegotiation"),
    pytest.param("connect_timeout=3", "connect_timeout", id="libpq-only"),
    pytest.param("sslnegotiation=direct&sslmode=prefer", "sslnegotiation",
                 id="direct-tls-not-required"),
]


def _url(pg_server: PgServer, query: str) -> str:
    """The fixture's database URL with a password (trust auth ignores it) and ``query``."""
    url = pg_server.dsn("postgres").replace("postgres@", f"postgres:{PASSWORD}@", 1)
    return f"{url}?{query}"


@pytest.mark.postgres
@pytest.mark.parametrize("query", GOOD)
async def test_options_asyncpg_takes_pass_and_connect(pg_server: PgServer, query: str) -> None:
    url = _url(pg_server, query)
    assert dsn_problem(url) is None
    conn = await asyncpg.connect(url, timeout=10)
    await conn.close()


@pytest.mark.postgres
@pytest.mark.parametrize(("query", "parameter"), BAD)
async def test_options_asyncpg_refuses_are_told_by_name_without_the_password(
    pg_server: PgServer, query: str, parameter: str
) -> None:
    url = _url(pg_server, query)
    problem = dsn_problem(url)
    assert problem is not None and parameter in problem
    assert PASSWORD not in problem and query.partition("=")[2] not in problem
    # Not stricter than asyncpg and the server: this URL never connects.
    with pytest.raises((asyncpg.InterfaceError, asyncpg.PostgresError)):
        await asyncpg.connect(url, timeout=10)


@pytest.mark.parametrize("query", [
    pytest.param("sslmode", id="no-value"),
    pytest.param("sslmode=require&&", id="empty-pair"),
    pytest.param(f"{PASSWORD}", id="a-password-as-a-name"),
    pytest.param("port=54x", id="port-not-a-number"),
    pytest.param("port=5432,99999", id="port-out-of-range"),
])
def test_a_malformed_query_is_told_without_quoting_it(query: str) -> None:
    problem = dsn_problem(f"postgresql://u:{PASSWORD}@db.example/audit?{query}")
    assert problem is not None
    assert PASSWORD not in problem and query not in problem


def _environment(tmp_path: Path, url: str) -> dict[str, str]:
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "main.yaml").write_text("version: 1\nname: main\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("POSTWARDEN_", "PG"))}
    return env | {"POSTWARDEN_DATABASE_URL": url, "POSTWARDEN_POLICY_DIR": str(policies),
                  "POSTWARDEN_SPOOL_DIR": str(tmp_path / "spool")}


PROBLEM = ("POSTWARDEN_DATABASE_URL: database_url: the query parameter sslmode must be one "
           "of disable, allow, prefer, require, verify-ca, verify-full")


@pytest.mark.parametrize(("argv", "lines"), [
    pytest.param(["postwarden_milter", "check"],
                 ["postwarden-milter: invalid settings:", f"  {PROBLEM}"], id="milter-check"),
    pytest.param(["postwarden_milter", "migrate"],
                 ["postwarden-milter: invalid settings:", f"  {PROBLEM}"], id="milter-migrate"),
    pytest.param(["postwarden_admin_api", "migrate"],
                 ["postwarden-admin: invalid settings:", f"  {PROBLEM}"], id="admin-migrate"),
    pytest.param(["postwarden_admin_api", "keys", "list"],
                 ["postwarden-admin: invalid settings:", f"  {PROBLEM}"], id="admin-keys-list"),
])
def test_a_typo_in_an_option_is_a_settings_problem_at_start(
    tmp_path: Path, argv: list[str], lines: list[str]
) -> None:
    url = f"postgresql://pw:{PASSWORD}@127.0.0.1:1/db?sslmode=requre"
    done = subprocess.run([sys.executable, "-m", *argv], env=_environment(tmp_path, url),
                          capture_output=True, text=True, timeout=60, check=False)
    # 2: invalid settings, in both services (their units do not restart on it)
    assert (done.returncode, done.stderr.splitlines()) == (2, lines)
    assert PASSWORD not in done.stdout + done.stderr


def test_store_migrate_tells_it_as_a_usage_error(tmp_path: Path) -> None:
    url = f"postgresql://pw:{PASSWORD}@127.0.0.1:1/db?sslmode=requre"
    done = subprocess.run([sys.executable, "-m", "postwarden_store.cli", "migrate"],
                          env=_environment(tmp_path, url), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"postwarden-store migrate: error: database url: {PROBLEM.split(': ', 2)[2]}")
    assert PASSWORD not in done.stdout + done.stderr


def test_store_migrate_shows_the_form_a_url_takes_as_it_is(tmp_path: Path) -> None:
    # Redacted as if it held a password, the form read USER:[REDACTED]@HOST.
    url = f"postgresql://pw:{PASSWORD}@127.0.0.1:x/db"
    done = subprocess.run([sys.executable, "-m", "postwarden_store.cli", "migrate"],
                          env=_environment(tmp_path, url), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "postwarden-store migrate: error: database url: expected "
        "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (a port is not a number from 1 to 65535)")
    assert PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize("argv", [
    pytest.param(["postwarden_store.cli", "migrate"], id="store-migrate"),
    pytest.param(["postwarden_milter", "migrate"], id="milter-migrate"),
    pytest.param(["postwarden_admin_api", "migrate"], id="admin-migrate"),
    pytest.param(["postwarden_admin_api", "keys", "list"], id="admin-keys-list"),
])
def test_asyncpg_refusing_the_configuration_at_connect_is_one_line(
    tmp_path: Path, argv: list[str]
) -> None:
    """What only asyncpg can tell, as it connects (sslmode=verify-full, and no root
    certificate where it looks, ~/.postgresql/root.crt): one line, exit 2, database_url's
    own fault (refusing_bad_url) as the server's refusal of its options is."""
    url = f"postgresql://pw:{PASSWORD}@127.0.0.1:1/db?sslmode=verify-full"
    assert dsn_problem(url) is None
    env = _environment(tmp_path, url) | {"HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", *argv], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "root certificate file" in done.stderr and "Traceback" not in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
