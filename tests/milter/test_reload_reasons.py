"""Reloads asked for meanwhile make one reload, and a signal's stays a signal's: its
sender (systemd, through the parent of worker processes) waits for the READY=1 that ends
it, which a reload for a NOTIFY does not say. Driven by holding the reload thread (not
started yet, or inside a reload) while the requests arrive."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.reload import PolicyReloader
from tests.fixtures.postgres import wait_until
from tests.milter.test_reload import POLICY

HOLD_SECONDS = 30.0  # at most: a test that fails before releasing does not hang the thread


class Announced:
    """An ``around_request``: the reasons of the requested reloads, in order. With
    ``hold``, the first reload waits inside until ``release`` is set."""

    def __init__(self, hold: bool = False) -> None:
        self.reasons: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    @contextmanager
    def __call__(self, reason: str) -> Iterator[None]:
        self.reasons.append(reason)
        self.entered.set()
        self.release.wait(HOLD_SECONDS)
        yield


def _reloader(tmp_path: Path, loop: LoopThread, announced: Announced) -> PolicyReloader:
    """A reloader of a policy directory, not polled: it reloads on request only."""
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "main.yaml").write_text(POLICY.format(name="main", limit=5))
    reloader = PolicyReloader(Metrics(), spool_dir=tmp_path, policy_dir=policy_dir,
                              database_url=None, poll_seconds=0, loop_thread=loop,
                              instance_name="mx-test", around_request=announced)
    reloader.load_initial()
    return reloader


def test_a_notify_after_a_signal_leaves_the_reload_a_signals(
    tmp_path: Path, loop_thread: LoopThread,
) -> None:
    announced = Announced()
    reloader = _reloader(tmp_path, loop_thread, announced)
    reloader.request()  # SIGHUP
    reloader.request("notify")  # then a NOTIFY, before the reload thread took the first
    reloader.start()
    try:
        assert wait_until(lambda: announced.reasons, timeout=10)
    finally:
        reloader.stop()
    assert announced.reasons == ["signal"]  # one reload for both, announced


def test_a_signal_during_a_reload_is_announced_by_the_next(
    tmp_path: Path, loop_thread: LoopThread,
) -> None:
    announced = Announced(hold=True)
    reloader = _reloader(tmp_path, loop_thread, announced)
    reloader.request("notify")
    reloader.start()
    try:
        assert announced.entered.wait(10)  # the NOTIFY's reload runs, held
        reloader.request()  # SIGHUP meanwhile
        reloader.request("notify")  # and another NOTIFY
        announced.release.set()
        assert wait_until(lambda: len(announced.reasons) == 2, timeout=10)
    finally:
        announced.release.set()
        reloader.stop()
    assert announced.reasons == ["notify", "signal"]
