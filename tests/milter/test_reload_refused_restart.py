"""Policies from the database, two worker processes: an activation the workers refuse
(they keep filtering with the set they run) must not stop the replacement of a worker
that dies. It exited 2 ("policies do not load") at each start, and the milter served
on with one worker fewer, for good."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from postwarden_milter.settings import LAST_GOOD_NAME
from tests.fixtures.postgres import wait_until
from tests.milter.test_policy_poll import _verdict
from tests.milter.test_process import _env, _serving
from tests.milter.test_reload import RULE, _activate, _deactivate


def _workers(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children]


@pytest.mark.postgres
def test_a_worker_dying_after_a_refused_activation_is_replaced_on_the_last_good_set(
        tmp_path: Path, database_url: str) -> None:
    asyncio.run(_activate(database_url, "restart-first", RULE.format(name="restart-first")))
    env = _env(tmp_path, processes="2", database_url=database_url)
    del env["POSTWARDEN_POLICY_DIR"]
    env["POSTWARDEN_LOG_LEVEL"] = "DEBUG"  # each worker's "policy set ... unchanged (notify)"
    log = tmp_path / "milter.log"
    try:
        with _serving(env, log) as proc:
            # Both workers listen: each loaded the active set again, finding it unchanged.
            assert wait_until(lambda: log.read_text().count("unchanged (notify)") == 2,
                              timeout=30), log.read_text()
            assert (tmp_path / "spool" / LAST_GOOD_NAME).exists()
            # Together with the first, a rule name used twice: every worker refuses it.
            asyncio.run(_activate(database_url, "restart-second",
                                  RULE.format(name="restart-second")))
            assert wait_until(lambda: log.read_text().count("refused, keeping the running set")
                              == 2, timeout=30), log.read_text()
            [first, _] = _workers(proc.pid)
            os.kill(first, signal.SIGKILL)
            assert wait_until(lambda: "policy reload (start) refused" in log.read_text()
                              or "ended (exit 2)" in log.read_text(), timeout=30)
            assert "ended (exit 2)" not in log.read_text(), log.read_text()
            assert wait_until(lambda: len(_workers(proc.pid)) == 2, timeout=30), log.read_text()
            assert all(_verdict(env, f"4QREST{n}") == b"c" for n in range(4))
            proc.terminate()
            assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        asyncio.run(_deactivate(database_url, "restart-first", "restart-second"))
