"""bench/milter_throughput.py --checkout: which sides it adds, and what it refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bench.milter_throughput import checkout_sides

TAKEN = {"bare", "floor", "milter"}


def checkout(parent: Path, name: str) -> Path:
    root = parent / name
    for part in ("milter", "policies", "store"):
        (root / part / "src").mkdir(parents=True)
    return root


def test_a_checkout_runs_its_own_sources_as_a_side_named_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = checkout(tmp_path, "before")
    monkeypatch.chdir(before)
    assert checkout_sides([Path(".")], TAKEN) == {"before": os.pathsep.join(
        str(before / part / "src") for part in ("milter", "policies", "store"))}


@pytest.mark.parametrize("name", ["bare", "floor", "milter"])
def test_a_name_another_side_has_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SystemExit, match=f"another side is named '{name}'"):
        checkout_sides([checkout(tmp_path, name)], TAKEN)


def test_two_checkouts_of_one_name_are_refused(tmp_path: Path) -> None:
    first, second = checkout(tmp_path / "a", "before"), checkout(tmp_path / "b", "before")
    with pytest.raises(SystemExit, match="another side is named 'before'"):
        checkout_sides([first, second], TAKEN)


def test_a_directory_without_the_sources_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"no .*milter/src"):
        checkout_sides([tmp_path / "typo"], TAKEN)
