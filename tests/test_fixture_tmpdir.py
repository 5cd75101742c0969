"""The throwaway servers start wherever TMPDIR points, or say why they cannot: a CI
runner's TMPDIR may be long (a unix socket's path has at most 107 bytes) or hold a
space, and one user postgres cannot reach fails initdb."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.fixtures.postfix import running_postfix
from tests.fixtures.postgres import PostgresCluster, running_cluster

pytestmark = pytest.mark.postgres


@pytest.fixture
def tmpdir_under(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory user postgres can reach, made TMPDIR for this process (not tmp_path,
    which it cannot reach)."""
    with tempfile.TemporaryDirectory(prefix="postwarden-tmpdir-") as parent:
        Path(parent).chmod(0o755)
        monkeypatch.setattr(tempfile, "tempdir", parent)
        yield Path(parent)


def _use(directory: Path, monkeypatch: pytest.MonkeyPatch, mode: int = 0o755) -> Path:
    directory.mkdir(mode=mode)
    directory.chmod(mode)
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


async def _answers(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SELECT true"))
    finally:
        await conn.close()


@pytest.mark.parametrize("name", ["with space", "l" * 90], ids=["space", "long"])
async def test_cluster_starts_in_an_unusual_tmpdir(
    tmpdir_under: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    tmp = _use(tmpdir_under / name, monkeypatch)
    with running_cluster() as cluster:
        assert await _answers(cluster.admin_dsn)
    assert list(tmp.iterdir()) == []


async def test_a_cluster_asked_for_a_unix_socket_serves_over_it(
    tmpdir_under: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bench/send_api.py --unix-socket: beside TCP, in a TMPDIR holding a space."""
    _use(tmpdir_under / "with space", monkeypatch)
    with running_cluster(unix_socket=True) as cluster:
        assert cluster.unix_dsn("postgres").startswith("postgresql://postgres@/postgres?host=")
        assert await _answers(cluster.unix_dsn("postgres"))
        assert await _answers(cluster.admin_dsn)


def test_cluster_in_a_tmpdir_postgres_cannot_reach_says_why(
    tmpdir_under: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = _use(tmpdir_under / "private", monkeypatch, mode=0o700)
    with pytest.raises(RuntimeError, match=r"(?s)initdb failed.*Permission denied"):
        PostgresCluster()
    assert list(tmp.iterdir()) == []


@pytest.mark.postfix
@pytest.mark.parametrize(("name", "reason"), [
    ("with space", "holds white space"),
    ("l" * 60, "longer than a unix socket's 107 bytes"),
], ids=["space", "long"])
def test_postfix_in_a_tmpdir_it_cannot_use_says_why(
    tmpdir_under: Path, monkeypatch: pytest.MonkeyPatch, name: str, reason: str
) -> None:
    tmp = _use(tmpdir_under / name, monkeypatch)
    with pytest.raises(RuntimeError, match=f"Postfix cannot run from .*{reason}.*TMPDIR"), \
            running_postfix():
        pass
    assert list(tmp.iterdir()) == []
