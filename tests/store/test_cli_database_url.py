"""`--database-url` is on the command line, which every local user reads (ps,
/proc/PID/cmdline): `postwarden-store migrate` and `postwarden-milter migrate` refuse
one that holds a password, saying where it goes instead; POSTWARDEN_DATABASE_URL
(the environment is the process's own) still may hold one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from postwarden_store.dsn import has_password
from tests.milter.test_process import empty_database  # noqa: F401 - a fixture

PASSWORD = "Sup3rS3cretPW"
COMMANDS = [
    pytest.param(["postwarden_store.cli", "migrate"], "POSTWARDEN_DATABASE_URL", id="store"),
    pytest.param(["postwarden_milter", "migrate"], "database_url in --config FILE",
                 id="milter"),
]


@pytest.mark.parametrize(("url", "holds"), [
    pytest.param(f"postgresql://pw:{PASSWORD}@db/x", True, id="after-the-user"),
    pytest.param(f"postgresql://pw@db/x?password={PASSWORD}", True, id="query"),
    pytest.param(f"postgresql://pw@db/x?sslpassword={PASSWORD}", True, id="key-passphrase"),
    pytest.param(f"postgresql://pw:{PASSWORD}@[::1/x", True, id="malformed"),
    pytest.param("postgresql://pw@db/x", False, id="user-only"),
    pytest.param("postgresql://pw:@db/x", False, id="empty"),
    pytest.param("postgresql:///x?host=/run/postgresql", False, id="socket"),
])
def test_has_password(url: str, holds: bool) -> None:
    assert has_password(url) is holds


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def _environment(**variables: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")} | variables


@pytest.mark.parametrize(("argv", "instead"), COMMANDS)
@pytest.mark.parametrize("url", [
    pytest.param(f"postgresql://pw:{PASSWORD}@127.0.0.1:1/x", id="after-the-user"),
    pytest.param(f"postgresql://pw@127.0.0.1:1/x?password={PASSWORD}", id="query"),
])
def test_a_password_in_the_argument_is_refused_before_connecting(
    argv: list[str], instead: str, url: str
) -> None:
    done = _run([*argv, "--database-url", url, "--dry-run"], _environment())
    assert done.returncode == 2
    refusal = done.stderr.splitlines()[-1]
    assert "argument --database-url: a password here is visible to every local user" in refusal
    assert "~/.pgpass" in refusal and instead in refusal
    assert PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize(("argv", "instead"), COMMANDS)
def test_help_says_to_leave_the_password_out(argv: list[str], instead: str) -> None:
    done = _run([*argv, "--help"], _environment())
    assert done.returncode == 0
    assert "without a password" in " ".join(done.stdout.split())


@pytest.mark.postgres
@pytest.mark.parametrize(("argv", "instead"), COMMANDS)
def test_the_environment_may_hold_the_password_and_the_argument_the_rest(
    argv: list[str], instead: str,
    empty_database: str,  # noqa: F811 - the imported fixture
) -> None:
    # The fixture's server trusts loopback: the password is taken and not checked.
    with_password = empty_database.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    from_environment = _run([*argv, "--dry-run"],
                            _environment(POSTWARDEN_DATABASE_URL=with_password))
    assert from_environment.returncode == 0, from_environment.stderr
    assert from_environment.stdout.startswith("pending 0001_")
    without = _run([*argv, "--database-url", empty_database, "--dry-run"], _environment())
    assert (without.returncode, without.stdout) == (0, from_environment.stdout)


@pytest.mark.parametrize("argv", [
    pytest.param(["postwarden_store.cli", "migrate"], id="store"),
    pytest.param(["postwarden_milter", "migrate"], id="milter"),
    pytest.param(["postwarden_admin_api", "migrate"], id="admin"),
])
def test_a_url_given_without_its_option_is_not_quoted_with_its_password(
    argv: list[str]
) -> None:
    # argparse's refusal quoted it whole, to a stderr that is often a log.
    done = _run([*argv, f"postgresql://pw:{PASSWORD}@127.0.0.1:1/x"], _environment())
    assert done.returncode == 2
    assert PASSWORD not in done.stdout + done.stderr
    assert done.stderr.splitlines()[-1].endswith(
        "error: unrecognized arguments: postgresql://pw:[REDACTED]@127.0.0.1:1/x")
