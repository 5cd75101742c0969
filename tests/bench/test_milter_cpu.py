"""bench/milter_cpu.py runs to its figures: its stand-in audit sink answers the milter's
callbacks as the audit pipeline does, so every message is accepted as the bench expects
(a sink the milter no longer takes had each message tempfailed, and the bench broke
unseen). Run at its smallest, one message a shape; its figures are not judged."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.milter_throughput import WORKLOADS

BENCH = Path(__file__).resolve().parents[2] / "bench" / "milter_cpu.py"
FIGURE = re.compile(r"(\S+) +\d+\.\d{3}   \(min \d+\.\d{3}\)")


def test_the_bench_accepts_every_message_and_prints_a_figure_per_shape() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--rounds", "1", "--messages", "1"],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "process CPU per message, ms (median of 1 rounds of 1):"
    shapes = [name for name, _, _ in WORKLOADS]
    # A figure for each shape, in ms per message, whatever it is.
    assert [found[1] if (found := FIGURE.fullmatch(line)) else line
            for line in lines[1:-1]] == shapes
    assert lines[-1] == f"{len(WORKLOADS)} messages, each accepted and audited"
