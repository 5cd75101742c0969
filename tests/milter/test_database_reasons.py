"""A database_url that reaches the server but names a database or role it lacks is
told by the server's own words (`check` prints them, and fails: the milter would
start, but spool until the admin fixes it), not by an exception's class name: what the
admin must fix is in its line, the password never is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from postwarden_milter.cli import main
from postwarden_milter.metrics import Metrics
from tests.conftest import PgServer
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import wait_until
from tests.milter.test_cli import _config
from tests.store.test_audit import _running, make_event

pytestmark = pytest.mark.postgres

PASSWORD = "s3cret-pw"


@pytest.mark.parametrize("case", [
    ("{server}/postwarden_absent", 'database "postwarden_absent" does not exist', 2),
    ("postgresql://nobody_here:{password}@{host}/postgres", 'role "nobody_here" does not exist',
     2),
])
def test_check_says_what_the_server_refused(
    pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, *, capsys: pytest.CaptureFixture[str],
    case: tuple[str, str, int],
) -> None:
    url, said, status = case
    for variable in [v for v in os.environ if v.startswith("POSTWARDEN_")]:
        monkeypatch.delenv(variable)
    server = pg_server.dsn("x").rsplit("/", 1)[0]
    host = server.rsplit("@", 1)[1]
    database_url = url.format(server=server, host=host, password=PASSWORD)
    config = str(_config(tmp_path, database_url=f"'{database_url}'"))
    assert main(["check", "--config", config]) == status
    [line] = [r.getMessage() for r in caplog.records if r.name == "postwarden_milter.app"]
    assert said in line, line
    # policy_dir's policies: a start runs them, spooling its audit events.
    assert line.endswith("the milter starts and spools audit events until database_url or "
                         "the server is fixed"), line
    err = capsys.readouterr().err
    assert (said in err) == bool(status), err
    assert PASSWORD not in line + err


def test_a_milter_with_only_the_databases_policies_says_why_it_does_not_start(
    pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No policy_dir and no last good set: refused its database_url, the start has no
    policies and exits 1 (retried by the unit), where check said it would start and
    spool; and its log said "no policy set: database unreachable", of a server that
    answered and refused."""
    for variable in [v for v in os.environ if v.startswith("POSTWARDEN_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("POSTWARDEN_POLICY_DIR", "")  # the database's policies alone
    monkeypatch.setenv("POSTWARDEN_MILTER_SOCKET", f"inet:{free_port()}@127.0.0.1")
    host = pg_server.dsn("x").rsplit("/", 1)[0].rsplit("@", 1)[1]
    database_url = f"postgresql://nobody_here:{PASSWORD}@{host}/postgres"
    config = str(_config(tmp_path, database_url=f"'{database_url}'"))
    assert main(["check", "--config", config]) == 2
    err = capsys.readouterr().err
    does_not_start = ("with no usable last good policy set in spool_dir, the milter does not "
                      "start (exit 1, retried) until database_url or the server is fixed")
    assert does_not_start in err, err
    start = subprocess.run([sys.executable, "-m", "postwarden_milter", "--config", config],
                           capture_output=True, text=True, timeout=60, check=False)
    assert start.returncode == 1, start.stderr
    # Said as check says it: refused, with the server's reason, not "unreachable".
    refused = 'InvalidAuthorizationSpecificationError: role "nobody_here" does not exist'
    assert (f'postwarden-milter: no policy set: the server refuses database_url ({refused}) '
            'and no usable last good set in spool_dir') in start.stderr, start.stderr
    assert "unreachable" not in start.stderr
    # Its first line too: not that it spools, as a milter with other policies does.
    assert f"database refuses database_url at start ({refused}): {does_not_start}" in start.stderr
    assert "spool" not in start.stderr.replace("spool_dir", "")
    assert PASSWORD not in start.stderr


def test_the_audit_writer_says_what_the_server_refused(
    pg_server: PgServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = pg_server.dsn("postwarden_absent")
    with _running(missing, tmp_path, Metrics()) as pipeline:
        pipeline.submit(make_event())
        assert wait_until(lambda: "audit database refuses" in caplog.text, timeout=10)
    assert ('audit database refuses database_url (InvalidCatalogNameError: database '
            '"postwarden_absent" does not exist): fix database_url or the server\'s roles, '
            'databases or pg_hba.conf; spooling, retry in 0.5 s') in caplog.text


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
        assert wait_until(lambda: "audit database refuses" in caplog.text, timeout=10)
    # No outage, which no wait mends: a refusal, as at start.
    assert ("audit database refuses database_url (ClientConfigurationError: the password file "
            "(passfile=, $PGPASSFILE or ~/.pgpass) is not utf-8 text)") in caplog.text
