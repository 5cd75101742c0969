"""Run by a user other than root, the demo and the Postfix fixture say that they need
root before starting anything (the demo started PostgreSQL and the milter, then died
of a PermissionError and left the Postfix instance's directory in TMPDIR)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="becomes another user")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A TMPDIR user nobody writes in (not under tmp_path, which it cannot reach)."""
    with tempfile.TemporaryDirectory(prefix="postwarden-not-root-") as tmp:
        Path(tmp).chmod(0o1777)
        yield Path(tmp)


def _as_nobody(argv: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp), "HOME": str(tmp),
           "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(argv, check=False, cwd=REPO, env=env, user="nobody", group="nogroup",
                          extra_groups=[], capture_output=True, text=True, timeout=60)


def test_demo_as_another_user_says_it_needs_root(shared_tmp: Path) -> None:
    result = _as_nobody([sys.executable, "contrib/demo/demo.py"], shared_tmp)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "demo: a private Postfix needs root" in result.stderr
    assert "starting" not in result.stdout  # nothing was started
    assert list(shared_tmp.iterdir()) == []


def test_postfix_fixture_as_another_user_says_it_needs_root(shared_tmp: Path) -> None:
    script = ("from tests.fixtures.postfix import PostfixInstance\n"
              "try:\n    PostfixInstance(25)\n"
              "except RuntimeError as exc:\n    print(exc)\n")
    result = _as_nobody([sys.executable, "-c", script], shared_tmp)
    assert "a private Postfix needs root" in result.stdout, result.stderr
    assert list(shared_tmp.iterdir()) == []
