"""The spool's names are durable, not only its data: creating the spool file, or removing
an orphan's, fsyncs the directory too (a power cut could otherwise take the new file
away with every batch reported spooled in it); an append to an existing file does not."""

from __future__ import annotations

import datetime as dt
import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from postwarden_milter.reload import LAST_GOOD_NAME, load_last_good, save_last_good
from postwarden_milter.spool import AuditSpool, SpoolBudget, adopt_orphans, spool_name
from postwarden_policies import AuditEvent

REAL_FSYNC = os.fsync


def _event(uid: str) -> AuditEvent:
    return AuditEvent(
        event_id=uid.rjust(32, "0"), time=dt.datetime.now(dt.UTC), instance="mx-test",
        queue_id=f"Q{uid}", message_uid=uid, client_address=None, client_name=None,
        helo=None, auth_user=None, sender="alice@example.org", recipients=("bob@example.net",),
        header_from=None, message_id=None, subject=None, size=1, action="accept",
        smtp_reply=None, rules=(), changes=(), policy_hash="h", duration_ms=1.0,
    )


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths of the descriptors fsync'd (really), in order."""
    paths: list[Path] = []

    def fsync(fd: int) -> None:
        paths.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        REAL_FSYNC(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


def test_creating_the_spool_fsyncs_its_directory_and_appending_does_not(
        tmp_path: Path, fsynced: list[Path]) -> None:
    spool = AuditSpool(tmp_path, SpoolBudget(10**6))
    spool.append([_event("1")])
    assert fsynced == [spool.path, tmp_path]  # the data, then the name
    fsynced.clear()
    spool.append([_event("2")])
    assert fsynced == [spool.path]


def test_a_spool_rotated_away_is_created_again_with_its_directory_fsynced(
        tmp_path: Path, fsynced: list[Path]) -> None:
    spool = AuditSpool(tmp_path, SpoolBudget(10**6))
    spool.append([_event("1")])
    spool.path.rename(tmp_path / "audit-spool.jsonl.1")  # the admin's rotation
    fsynced.clear()
    spool.append([_event("2")])
    assert fsynced == [spool.path, tmp_path]


def test_clear_creates_no_spool_rotated_away(tmp_path: Path, fsynced: list[Path]) -> None:
    spool = AuditSpool(tmp_path, SpoolBudget(10**6))
    spool.append([_event("1")])
    spool.path.unlink()
    spool.clear()
    assert not spool.path.exists()
    fsynced.clear()
    spool.append([_event("2")])
    assert fsynced == [spool.path, tmp_path]


def test_a_new_spool_whose_directory_fsync_failed_is_removed_to_be_created_again(
        tmp_path: Path, fsynced: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: Callable[[int], None] = os.fsync

    def fails_on_directories(fd: int) -> None:
        recorded(fd)
        if fsynced[-1] == tmp_path:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fails_on_directories)
    spool = AuditSpool(tmp_path, SpoolBudget(10**6))
    with pytest.raises(OSError):
        spool.append([_event("1")])
    assert not spool.path.exists()  # not spooled, and no name left that was never fsync'd
    monkeypatch.setattr(os, "fsync", recorded)
    fsynced.clear()
    spool.append([_event("2")])
    assert fsynced == [spool.path, tmp_path]
    assert [e.message_uid for batch, _ in spool.batches(10) for e in batch] == ["2"]


def test_adopting_an_orphan_spool_fsyncs_the_directory_after_removing_it(
        tmp_path: Path, fsynced: list[Path]) -> None:
    budget = SpoolBudget(10**6, slots=2)
    AuditSpool(tmp_path, budget).append([_event("1")])
    orphan = AuditSpool(tmp_path, budget, worker=1)
    orphan.append([_event("2")])
    fsynced.clear()
    adopt_orphans(tmp_path, workers=1)
    assert not orphan.path.exists()
    # Renamed (where the copy begins), the events moved, then the name gone.
    assert fsynced == [tmp_path, tmp_path / spool_name(0), tmp_path]


def test_the_last_good_policy_set_reaches_the_disk_before_its_name(
        tmp_path: Path, fsynced: list[Path]) -> None:
    """Written to a temporary file, fsync'd, renamed, then the directory fsync'd: never
    an empty file under the name after a power cut."""
    save_last_good(tmp_path, [("a.yaml", "version: 1")])
    temporary, directory = fsynced
    assert (temporary.parent, temporary.suffix, directory) == (tmp_path, ".tmp", tmp_path)
    assert load_last_good(tmp_path) == [("a.yaml", "version: 1")]
    assert [p.name for p in tmp_path.iterdir()] == [LAST_GOOD_NAME]
