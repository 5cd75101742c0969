"""make builds .venv on Debian's Python, and makes anew one made on another (earlier
versions of the Makefile used the first python3 in PATH: pyenv's, where it comes
first), so that the tests run on the Python a Debian install runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _dry_run(checkout: Path, system_python: str) -> str:
    return subprocess.run(["make", "-n", "venv", f"SYSTEM_PYTHON={system_python}"],
                          cwd=checkout, capture_output=True, text=True, check=True).stdout


def _checkout_with_venv_on(tmp_path: Path, python: str) -> Path:
    shutil.copy(REPO / "Makefile", tmp_path)
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(python)
    installed = tmp_path / ".venv" / ".installed"
    installed.touch()
    later = time.time() + 10
    os.utime(installed, (later, later))  # newer than pyproject.toml: up to date
    return tmp_path


def test_a_venv_on_the_system_python_is_kept(tmp_path: Path) -> None:
    checkout = _checkout_with_venv_on(tmp_path, sys.executable)
    assert "making it anew" not in _dry_run(checkout, sys.executable)


def test_a_venv_on_another_python_is_made_anew(tmp_path: Path) -> None:
    other = shutil.which("sh")
    assert other is not None
    checkout = _checkout_with_venv_on(tmp_path, other)
    planned = _dry_run(checkout, sys.executable)
    assert "making it anew" in planned and f"{sys.executable} -m venv .venv" in planned
