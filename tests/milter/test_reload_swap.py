"""A deploy that swaps policy_dir's files (a Kubernetes ConfigMap's ``..data`` link) while
a reload reads them: the set loaded is the old or the new one, never part of each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.reload import PolicyReloader
from postwarden_policies import load_policy_set
from tests.milter.test_reload import POLICY


def _config_map(root: Path) -> None:
    """Two releases of a.yaml and b.yaml, the policy of each file moved to the other in
    the second, its limit changed (a mix of both names one policy twice); the first is
    live."""
    for release, names, limit in (("..r1", ("p1", "p2"), 5), ("..r2", ("p2", "p1"), 9)):
        (root / release).mkdir(parents=True)
        for file, name in zip(("a.yaml", "b.yaml"), names, strict=True):
            (root / release / file).write_text(POLICY.format(name=name, limit=limit))
    os.symlink("..r1", root / "..data")
    for file in ("a.yaml", "b.yaml"):
        os.symlink(f"..data/{file}", root / file)


def _swap_after_reading(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Swap ``..data`` to the second release (as the kubelet does: a link renamed over
    it) right after the next read of a.yaml, before b.yaml is read."""
    read_text = Path.read_text

    def read_then_swap(path: Path, *args: object, **kwargs: object) -> str:
        text = read_text(path, *args, **kwargs)  # type: ignore[arg-type]
        if path == root / "a.yaml" and not (root / "..swapped").exists():
            os.symlink("..r2", root / "..swapped")
            os.replace(root / "..swapped", root / "..data")
        return text

    monkeypatch.setattr(Path, "read_text", read_then_swap)


def test_a_swap_during_a_reload_loads_the_new_set_whole(
        tmp_path: Path, loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "policies"
    _config_map(root)
    (tmp_path / "spool").mkdir()
    metrics = Metrics()
    reloader = PolicyReloader(metrics, spool_dir=tmp_path / "spool", policy_dir=root,
                              database_url=None, poll_seconds=0, loop_thread=loop_thread,
                              instance_name="mx-test")
    holder = reloader.load_initial()
    second = load_policy_set([root / "..r2"]).content_hash
    assert holder.current.content_hash != second
    _swap_after_reading(root, monkeypatch)
    assert reloader.reload("file change")
    assert holder.current.content_hash == second
    assert metrics.registry.get_sample_value("postwarden_policy_reload_failing") == 0
