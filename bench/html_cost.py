"""nh3's CPU on the HTML shapes of bench/html_shapes.py beside the cost guard's
estimate (postwarden_policies.html_cost) and the guard's own CPU: the estimate's
units should stay near 1.7 ns of nh3 where nh3 is slow, and the guard's budget
(BUDGET units) near 100 ms of nh3.

    .venv/bin/python bench/html_cost.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import nh3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.html_shapes import COSTLY, ORDINARY

from postwarden_policies.html_cost import BUDGET, estimated_cost


def cpu_ms(run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best * 1000


def main() -> None:
    print(f"budget {BUDGET:,} units")
    print(f"{'shape':40s} {'KB':>7s} {'nh3 ms':>9s} {'units':>13s} {'ns/unit':>8s} "
          f"{'guard ms':>9s}")
    for label, html in ORDINARY + COSTLY:
        folded = html.lower()
        units = estimated_cost(folded, 10**15)
        nh3_ms = cpu_ms(lambda html=html: nh3.clean(html))
        guard_ms = cpu_ms(lambda folded=folded: estimated_cost(folded, BUDGET))
        print(f"{label:40s} {len(html) / 1024:7.1f} {nh3_ms:9.1f} {units:13,d} "
              f"{nh3_ms * 1e6 / max(units, 1):8.1f} {guard_ms:9.1f}", flush=True)


if __name__ == "__main__":
    main()
