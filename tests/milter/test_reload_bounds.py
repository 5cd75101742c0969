"""No setting and no error stops policy reloads for good.

A ``policy_poll_seconds`` past ``threading.TIMEOUT_MAX`` (1e10) was accepted, and
the watcher's first wait raised OverflowError outside its ``try``: the reload thread
died, and with it every reload, SIGHUP's and NOTIFY's too, without a word. Every
``*_seconds`` setting is now bounded at start, and an unexpected error in the wait
is logged and watched past like one in a reload.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from postwarden_milter.loopthread import LoopThread
from postwarden_milter.settings import SETTING_NAMES, SettingsError, load_settings
from tests.fixtures.postgres import wait_until
from tests.milter.test_reload import POLICY, _file_reloader

SECONDS = [name for name in SETTING_NAMES if name.endswith("_seconds")]


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "main.yaml").write_text(POLICY.format(name="main", limit=5))
    return {"POSTWARDEN_POLICY_DIR": str(tmp_path / "policies"),
            "POSTWARDEN_SPOOL_DIR": str(tmp_path / "spool")}


def test_the_seconds_settings_are_the_ones_bounded() -> None:
    assert sorted(SECONDS) == ["duplicate_window_seconds", "message_timeout_seconds",
                               "policy_poll_seconds"]


@pytest.mark.parametrize("name", SECONDS)
def test_a_wait_threading_refuses_is_refused_at_start_naming_the_line(
    base_env: dict[str, str], tmp_path: Path, name: str
) -> None:
    config = tmp_path / "postwarden.yaml"
    config.write_text(f"fail_action: tempfail\n{name}: {threading.TIMEOUT_MAX}\n")
    with pytest.raises(SettingsError) as refused:
        load_settings(config, base_env)
    [problem] = refused.value.problems
    assert problem.startswith(f"{config}:2: {name}: at most ")


@pytest.mark.parametrize(("name", "most"), [
    ("policy_poll_seconds", "86400"),
    ("message_timeout_seconds", "3600"),
    ("duplicate_window_seconds", "604800"),
])
def test_each_bound_is_allowed_and_no_more(
    base_env: dict[str, str], name: str, most: str
) -> None:
    variable = f"POSTWARDEN_{name.upper()}"
    assert getattr(load_settings(None, {**base_env, variable: most}), name) == float(most)
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {**base_env, variable: f"{most}.5"})
    assert refused.value.problems == [f"{variable}: {name}: at most {most}, got '{most}.5'"]


def test_the_milter_does_not_start_with_a_poll_that_would_end_its_reloads(
    base_env: dict[str, str]
) -> None:
    """The reviewer's case: 1e10 started, then SIGHUP never reloaded."""
    env = {**base_env, "POSTWARDEN_POLICY_POLL_SECONDS": "1e10", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "postwarden_milter", "check"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert ("POSTWARDEN_POLICY_POLL_SECONDS: policy_poll_seconds: at most 86400, "
            "got '1e10'") in result.stderr


class _WaitFailsOnce(threading.Event):
    """The watcher's wake-up event, whose first wait raises as an over-long one did."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        if not self.failed.is_set():
            self.failed.set()
            raise OverflowError("timeout value is too large")
        return super().wait(timeout)


def test_an_error_in_the_watchers_wait_is_logged_and_reloads_go_on(
    tmp_path: Path, loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy, _, reloader = _file_reloader(tmp_path, loop_thread)
    holder = reloader.load_initial()
    wake = _WaitFailsOnce()
    reloader._requested = wake  # before the watcher starts: the only one to wait on it
    reloader.start()
    try:
        assert wait_until(wake.failed.is_set, timeout=10)
        policy.write_text(POLICY.format(name="main", limit=7))
        reloader.request()  # SIGHUP's path
        assert wait_until(lambda: holder.current.limits.max_recipients == 7, timeout=10)
    finally:
        reloader.stop()
    assert "policy watcher: unexpected error, still watching" in caplog.text
    assert "OverflowError" in caplog.text
