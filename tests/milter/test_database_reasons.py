"""A database_url that reaches the server but names a database or role it lacks is
told by the server's own words (`check` prints them), not by an exception's class
name: what the admin must fix is in its line, the password never is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from postwarden_milter.cli import main
from postwarden_milter.metrics import Metrics
from tests.conftest import PgServer
from tests.fixtures.postgres import wait_until
from tests.milter.test_cli import _config
from tests.store.test_audit import _running, make_event

pytestmark = pytest.mark.postgres

PASSWORD = "s3cret-pw"


@pytest.mark.parametrize("case", [
    ("{server}/postwarden_absent", 'database "postwarden_absent" does not exist'),
    ("postgresql://nobody_here:{password}@{host}/postgres", 'role "nobody_here" does not exist'),
    # The client's words: told as "ConnectionError" alone, where the admin service said it.
    ("{server}/postgres?sslmode=require", "rejected SSL upgrade"),
])
def test_check_says_what_the_server_refused(
    pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, case: tuple[str, str],
) -> None:
    url, said = case
    for variable in [v for v in os.environ if v.startswith("POSTWARDEN_")]:
        monkeypatch.delenv(variable)
    server = pg_server.dsn("x").rsplit("/", 1)[0]
    host = server.rsplit("@", 1)[1]
    database_url = url.format(server=server, host=host, password=PASSWORD)
    config = str(_config(tmp_path, database_url=f"'{database_url}'"))
    assert main(["check", "--config", config]) == 0  # as the milter would: it starts, spools
    [line] = [r.getMessage() for r in caplog.records if r.name == "postwarden_milter.app"]
    assert said in line, line
    assert PASSWORD not in line


def test_the_audit_writer_says_what_the_server_refused(
    pg_server: PgServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = pg_server.dsn("postwarden_absent")
    with _running(missing, tmp_path, Metrics()) as pipeline:
        pipeline.submit(make_event())
        assert wait_until(lambda: "audit database unavailable" in caplog.text, timeout=10)
    assert ('audit database unavailable (InvalidCatalogNameError); spooling, retry in 0.5 s: '
            'database "postwarden_absent" does not exist') in caplog.text


def test_the_audit_writer_says_what_the_client_refused(
    pg_server: PgServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Told by its class name alone, the admin could not tell what to fix.
    password_file = tmp_path / "pgpass"
    password_file.write_bytes("*:*:*:*:Geheimnis-\u00e4\n".encode("latin-1"))
    password_file.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(password_file))
    with _running(pg_server.dsn("postgres"), tmp_path, Metrics()) as pipeline:
        pipeline.submit(make_event())
        assert wait_until(lambda: "audit database unavailable" in caplog.text, timeout=10)
    assert ("audit database unavailable (ClientConfigurationError); spooling, retry in 0.5 s: "
            "the password file (passfile=, $PGPASSFILE or ~/.pgpass) is not utf-8 text"
            ) in caplog.text
