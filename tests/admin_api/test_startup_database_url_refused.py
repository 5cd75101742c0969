"""Options of database_url the client or the server refuses are invalid settings, no
outage: `serve`, `keys` and `migrate` exited 1, which the systemd unit restarts every
2 s for ever (an unknown server setting, a value it refuses), and sslmode=require
against a server without TLS read as "cannot reach the database", as did
sslnegotiation=direct against one that does not take TLS directly (asyncio's bare
ConnectionResetError, with no text at all). Each now says in one
line what of database_url is refused, without the password, and exits 2 (EXIT_CONFIG,
RestartPreventExitStatus=2)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from postwarden_admin_api.cli import EXIT_CONFIG
from tests.admin_api.test_startup_unreachable import ADMIN, STORE, _run

pytestmark = pytest.mark.postgres

PASSWORD = "s3cret-pw"  # the test server trusts loopback: any password connects
REFUSED = {
    "unknown-setting": ("options=-c%20no_such_setting%3D1",
                        'the server refuses its options: unrecognized configuration '
                        'parameter "no_such_setting"'),
    "unknown-parameter": ("no_such_parameter=1",
                          'the server refuses its options: unrecognized configuration '
                          'parameter "no_such_parameter"'),
    "bad-value": ("statement_timeout=soon",
                  'the server refuses its options: invalid value for parameter '
                  '"statement_timeout": "soon"'),
    "no-tls": ("sslmode=require",
               "its sslmode (require, verify-ca or verify-full, or that of PGSSLMODE) needs "
               "TLS, and the server does not offer TLS: enable ssl on the server, or set "
               "sslmode=prefer or disable"),
    "no-direct-tls": ("sslmode=require&sslnegotiation=direct",
                      "its sslnegotiation=direct (or that of PGSSLNEGOTIATION) needs a server "
                      "taking TLS directly, and the server hung up on the TLS handshake (no "
                      "TLS, or PostgreSQL before 17): set sslnegotiation=postgres, or enable "
                      "ssl on a PostgreSQL 17 or later server"),
}
# argv, and the program its line names
COMMANDS = {
    "serve": ([*ADMIN, "serve"], "postwarden-admin"),
    "keys": ([*ADMIN, "keys", "list"], "postwarden-admin"),
    "migrate": ([*ADMIN, "migrate"], "postwarden-admin migrate"),
    "migrate-dry-run": ([*ADMIN, "migrate", "--dry-run"], "postwarden-admin migrate"),
    # The URL from POSTWARDEN_DATABASE_URL: --database-url refuses one with a password.
    "store-migrate": ([*STORE, "migrate"], "postwarden-store migrate"),
}


def _with_password(database_url: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(netloc=f"postgres:{PASSWORD}@{parts.hostname}:"
                                            f"{parts.port}"))


@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_options_the_database_refuses_are_invalid_settings(
        database_url: str, case: str, command: str) -> None:
    option, said = REFUSED[case]
    argv, prog = COMMANDS[command]
    result = _run(argv, f"{_with_password(database_url)}?{option}")
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert result.stderr == f"{prog}: database_url: {said}\n"
    assert PASSWORD not in result.stderr


@pytest.mark.parametrize("part", ["role", "database"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_role_or_database_the_server_refuses_is_named_as_database_url(
        database_url: str, part: str, command: str) -> None:
    """Not database_url's options: a change on the server mends it (a role made, a
    database restored), so exit 1, retried. The line gave the server's words alone
    ('postwarden-admin: role "x" does not exist'), naming no setting."""
    parts = urlsplit(database_url)
    if part == "role":
        url = urlunsplit(parts._replace(netloc=f"no_such_role:{PASSWORD}@{parts.hostname}:"
                                               f"{parts.port}"))
        said = 'role "no_such_role" does not exist'
    else:
        url = urlunsplit(parts._replace(path="/no_such_database"))
        url = _with_password(url)
        said = 'database "no_such_database" does not exist'
    argv, prog = COMMANDS[command]
    result = _run(argv, url)
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"{prog}: database_url: the server refuses it: {said}\n"
    assert PASSWORD not in result.stderr
