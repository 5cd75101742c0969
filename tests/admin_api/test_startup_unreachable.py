"""What an admin reads when `postwarden-admin serve` (or a command that needs the
database) cannot start: one line naming the setting. A database that never answers
(a wrong port, a firewall that drops) printed `postwarden-admin: ` and nothing more,
the systemd unit restarting it every 2 s; one refused or an unknown host, and a
`listen` address in use, printed asyncio's text without the setting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.fixtures.adminapp import TEST_SECRET_KEY
from tests.fixtures.ports import free_port

ADMIN = [sys.executable, "-m", "postwarden_admin_api"]
STORE = [sys.executable, "-c", "import sys; from postwarden_store.cli import main; "
         "sys.exit(main())"]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port whose connections the kernel completes and nobody answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def _run(argv: list[str], database_url: str, listen: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    env |= {"POSTWARDEN_DATABASE_URL": database_url,
            "POSTWARDEN_SECRET_KEY": TEST_SECRET_KEY,
            "POSTWARDEN_LISTEN": listen or f"127.0.0.1:{free_port()}"}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.parametrize(("argv", "prog"), [
    pytest.param([*ADMIN, "serve"], "postwarden-admin", id="serve"),
    pytest.param([*ADMIN, "migrate"], "postwarden-admin migrate", id="migrate"),
    pytest.param([*STORE, "migrate"], "postwarden-store migrate", id="store-migrate"),
])
def test_a_database_that_never_answers_is_named(silent_port: int, argv: list[str],
                                                 prog: str) -> None:
    result = _run(argv, f"postgresql://postwarden:s3cret@127.0.0.1:{silent_port}/postwarden")
    assert result.returncode == 1
    assert result.stderr == (f"{prog}: database_url: cannot reach the database: "
                             "no answer within 10 s\n")


def test_a_refused_database_is_named() -> None:
    result = _run([*ADMIN, "keys", "list"],
                  f"postgresql://postwarden:s3cret@127.0.0.1:{free_port()}/postwarden")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "postwarden-admin: database_url: cannot reach the database: [Errno 111] ")
    assert "s3cret" not in result.stderr


def test_a_missing_certificate_file_is_named() -> None:
    # "[Errno 2] No such file or directory" said neither which file nor which setting.
    result = _run([*ADMIN, "keys", "list"],
                  f"postgresql://postwarden:s3cret@127.0.0.1:{free_port()}/postwarden"
                  "?sslmode=verify-full&sslrootcert=/nonexistent/root.crt")
    assert result.returncode == 1
    assert result.stderr == (
        "postwarden-admin: database_url: cannot reach the database: a certificate or key "
        "file it names is missing (sslrootcert, sslcert or sslkey, or PGSSLROOTCERT, "
        "PGSSLCERT, PGSSLKEY)\n")


@pytest.mark.postgres
def test_a_listen_address_in_use_is_named(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = _run([*ADMIN, "serve"], database_url, listen=f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"postwarden-admin: listen: cannot listen on 127.0.0.1:{port}: Address already in use")
