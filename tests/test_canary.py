"""pymilter's C extension must win over our `milter/` folder on every path."""

import importlib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_import_milter_is_pymilter_extension() -> None:
    milter = importlib.import_module("milter")
    assert milter.__file__ is not None
    assert milter.__file__.endswith(".so"), milter.__file__
    assert hasattr(milter, "setconn")


def test_import_milter_from_repository_root() -> None:
    probe = (
        "import milter, Milter; "
        "assert milter.__file__.endswith('.so'), milter.__file__; "
        "print(milter.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "site-packages" in result.stdout
