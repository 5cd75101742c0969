"""The spool directory and the last good policy set are the milter's alone, whatever the
umask. Without systemd (umask 0022) spool_dir was made 0755 and
policies-last-good.json 0644: any local user read the audit backlog's directory and
the policies (which name the addresses and patterns they look for)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from postwarden_milter.reload import LAST_GOOD_NAME, load_last_good, save_last_good
from postwarden_milter.settings import load_settings

SOURCES = [("main.yaml", "version: 1\nname: main\n")]


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """A shell's umask, not the unit's UMask=0077."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_spool_dir_is_created_private(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    spool = tmp_path / "state" / "spool"
    settings = load_settings(None, {"POSTWARDEN_POLICY_DIR": str(tmp_path / "policies"),
                                    "POSTWARDEN_SPOOL_DIR": str(spool)})
    assert settings.spool_dir == spool
    assert _mode(spool) == 0o700


def test_the_last_good_set_is_written_private(tmp_path: Path) -> None:
    save_last_good(tmp_path, SOURCES)
    assert _mode(tmp_path / LAST_GOOD_NAME) == 0o600
    assert load_last_good(tmp_path) == SOURCES


def test_a_temporary_file_a_killed_writer_left_is_made_private(tmp_path: Path) -> None:
    """Its name is the writer's pid: a later process with the same pid opens it again."""
    leftover = tmp_path / f"policies-last-good.{os.getpid()}.tmp"
    leftover.write_text("[[\"half", encoding="utf-8")
    leftover.chmod(0o644)
    save_last_good(tmp_path, SOURCES)
    assert [p.name for p in tmp_path.iterdir()] == [LAST_GOOD_NAME]
    assert _mode(tmp_path / LAST_GOOD_NAME) == 0o600
    assert load_last_good(tmp_path) == SOURCES
