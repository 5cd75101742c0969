"""The processes named by relay claims, as another process of the same host tells them
gone or not (real processes)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from postwarden_admin_api.send.claimants import Claimants


def _name_of(claimants: Claimants, pid: int) -> str:
    assert claimants.here is not None
    started = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    return f"{claimants.here}{pid}/{started}"


def test_only_a_process_of_this_host_that_is_gone_counts_as_gone() -> None:
    claimants = Claimants()
    assert claimants.me is not None and claimants.here is not None
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        name = _name_of(claimants, child.pid)
        reused = f"{name}0"  # that pid, started at another time: another process's
        elsewhere = "another-boot/1/0/" + name.removeprefix(claimants.here)
        assert claimants.gone([name, claimants.me, elsewhere]) == []
        assert claimants.gone([reused]) == [reused]
        child.kill()
        # Killed but not yet reaped by its parent (a zombie): it runs nothing more.
        deadline = time.monotonic() + 10
        while not claimants.gone([name]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert claimants.gone([name]) == [name]
    finally:
        child.kill()
        child.wait()
    assert claimants.gone([name, elsewhere, f"{claimants.here}x/1"]) == [name]
