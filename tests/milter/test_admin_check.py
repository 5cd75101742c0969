"""`postwarden-milter check` run as root (`sudo`, a deploy job) before the milter's first
start: it says whether the milter would start, and changes nothing. It created a
missing spool_dir, root's and mode 0700, which the milter (its own user) then could
not write: it refused to start."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.postgres import wait_until
from tests.milter.test_process import _env, _run
from tests.milter.test_reload_unreadable import (  # noqa: F401 - a fixture
    AS_ROOT,
    MILTER,
    NOBODY,
    shared_dir,
)


@pytest.mark.skipif(not AS_ROOT, reason="root runs check, the milter runs as nobody")
def test_check_as_root_leaves_the_spool_dir_to_the_milter(
    shared_dir: Path,  # noqa: F811 - the fixture
) -> None:
    env = _env(shared_dir, milter_socket=f"unix:{shared_dir}/milter.sock")
    spool = Path(env["POSTWARDEN_SPOOL_DIR"])
    checked = _run(["check"], env)
    assert checked.returncode == 0, checked.stderr
    assert not spool.exists()
    log = shared_dir / "milter.log"
    with log.open("wb") as output:
        milter = subprocess.Popen(MILTER, env=env, cwd=shared_dir, stdout=output,
                                  stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: "starting on" in log.read_text() or milter.poll() is not None,
                          timeout=30)
        assert milter.poll() is None, log.read_text()
        assert spool.stat().st_uid != 0  # the milter's own
    finally:
        milter.terminate()
        assert milter.wait(timeout=60) == 0, log.read_text()


def test_check_names_a_spool_dir_it_could_not_create(tmp_path: Path) -> None:
    """Not created is not unchecked: it must be possible to make it where it goes."""
    (tmp_path / "file").write_text("")
    env = _env(tmp_path, spool_dir=str(tmp_path / "file" / "spool"))
    result = _run(["check"], env)
    assert result.returncode == 2
    assert f"spool_dir: {tmp_path / 'file'} is not a directory" in result.stderr


@pytest.mark.skipif(not AS_ROOT, reason="a file of root's, and the milter as nobody")
@pytest.mark.parametrize("name", ["audit-spool.jsonl", "audit-journal-0-1.jsonl"])
def test_a_spool_file_the_milter_cannot_write_is_named_by_check_and_the_start(
    shared_dir: Path, name: str,  # noqa: F811 - the fixture
) -> None:
    """Left by a run as root (the milter tried by hand): the start failed with a
    traceback from the spool's replay, and check said ok."""
    env = _env(shared_dir, milter_socket=f"unix:{shared_dir}/milter.sock")
    spool = Path(env["POSTWARDEN_SPOOL_DIR"])
    spool.mkdir(mode=0o700)
    os.chown(spool, NOBODY, NOBODY)
    (spool / name).write_text("")
    (spool / name).chmod(0o600)  # root's
    expected = f"spool_dir: cannot read and write {spool / name}"
    for command in (["check"], []):
        result = subprocess.run([*MILTER, *command], env=env, cwd=shared_dir,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr
        assert "Traceback" not in result.stderr
