"""A password file asyncpg cannot decode (a Latin-1 password in ~/.pgpass, which libpq
reads as bytes) is a one-line client configuration error naming the file's settings,
never a traceback, nor an exception that carries the file's text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from postwarden_store import connect, create_pool

PASSWORD = "Geheimnis-\u00e4"
URL = "postgresql://pw@127.0.0.1:1/x"  # the file is read before any connection is tried
SAYS = "the password file (passfile=, $PGPASSFILE or ~/.pgpass) is not utf-8 text"


@pytest.fixture
def latin1_password_file(tmp_path: Path) -> Path:
    path = tmp_path / "pgpass"
    path.write_bytes(f"127.0.0.1:1:x:pw:{PASSWORD}\n".encode("latin-1"))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("argv", [
    pytest.param(["postwarden_store.cli", "migrate", "--dry-run"], id="store-migrate"),
    pytest.param(["postwarden_milter", "check"], id="milter-check"),
    pytest.param(["postwarden_admin_api", "keys", "list"], id="admin-keys"),
])
def test_a_password_file_not_utf8_is_told_in_one_line(
    latin1_password_file: Path, argv: list[str]
) -> None:
    # Invalid settings, exit 2, for every command: no retry mends them (migrate and the
    # admin service exited 1, which their systemd units restart for ever).
    environment = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")} | {
        "PGPASSFILE": str(latin1_password_file), "POSTWARDEN_DATABASE_URL": URL,
        "POSTWARDEN_POLICY_DIR": str(Path(__file__).parents[2] / "policies" / "examples"),
        "PYTHONUTF8": "1",
    }
    done = subprocess.run([sys.executable, "-m", *argv], env=environment, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].endswith(SAYS)


async def test_the_error_carries_nothing_of_the_file(
    latin1_password_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSFILE", str(latin1_password_file))
    for opening in (connect, create_pool):
        with pytest.raises(asyncpg.ClientConfigurationError) as raised:
            await opening(URL)
        assert str(raised.value) == SAYS
        # The UnicodeDecodeError's repr held the file's bytes, the password among them.
        assert raised.value.__context__ is None or raised.value.__suppress_context__
        assert raised.value.__cause__ is None
