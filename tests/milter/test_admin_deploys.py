"""policy_dir deployed as releases do it: a symlink swapped to the next release
(``ln -sfn releases/N current``). The new files may have the old ones' size and mtime
(copied with ``cp -p`` or ``rsync -t``, or a Nix store's, all mtime 1): the poll loads
them all the same, in every worker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.postgres import wait_until
from tests.milter.test_policy_poll import REJECTING, _verdict
from tests.milter.test_process import _env, _serving

# The same size as REJECTING, and the same mtime below: only the file differs.
PASSING = REJECTING.replace('"(?i)hello"', '"(?i)hellx"')


def _release(releases: Path, name: str, text: str) -> Path:
    release = releases / name
    release.mkdir(parents=True)
    (release / "main.yaml").write_text(text)
    os.utime(release / "main.yaml", ns=(1_000_000_000, 1_000_000_000))
    return release


def _point(current: Path, release: Path) -> None:
    """``ln -sfn``, atomically: a new link renamed over the old."""
    staged = current.with_name(current.name + ".new")
    staged.symlink_to(release)
    staged.replace(current)


@pytest.mark.parametrize("processes", [1, 2])
def test_a_swapped_symlink_is_polled_in(tmp_path: Path, processes: int) -> None:
    assert len(PASSING) == len(REJECTING)
    releases = tmp_path / "releases"
    first = _release(releases, "1", PASSING)
    second = _release(releases, "2", REJECTING)
    current = tmp_path / "current"
    _point(current, first)
    env = {**_env(tmp_path, policy_poll_seconds="0.1", processes=str(processes)),
           "POSTWARDEN_POLICY_DIR": str(current)}
    log = tmp_path / "milter.log"
    with _serving(env, log) as proc:
        assert wait_until(lambda: "starting" in log.read_text(), timeout=30), log.read_text()
        assert _verdict(env, "4QSWAP1") == b"c"
        _point(current, second)
        assert wait_until(lambda: log.read_text().count("policy set reloaded (file change)")
                          == processes, timeout=20), log.read_text()
        assert all(_verdict(env, f"4QSWAP2{n}") != b"c" for n in range(4))
        proc.terminate()
        assert proc.wait(timeout=60) == 0
