"""`postwarden-milter check` run as root (`sudo`, a deploy job) before the milter's first
start: it says whether the milter would start, and changes nothing. It created a
missing spool_dir, root's and mode 0700, which the milter (its own user) then could
not write: it refused to start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.fixtures.postgres import wait_until
from tests.milter.test_process import _env, _run
from tests.milter.test_reload_unreadable import (  # noqa: F401 - a fixture
    AS_ROOT,
    MILTER,
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
