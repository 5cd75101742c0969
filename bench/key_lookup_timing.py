"""API key verification: how long an unknown key id and a wrong secret take.

Verification does the same work whatever is wrong with a key (one lookup by id,
one digest, one constant-time comparison; tests/admin_api/test_keys.py checks
that work call by call), so the two answers should take the same time. This
runs the service's own verify_key (postwarden_admin_api.keys) against a
throwaway PostgreSQL (the key it makes goes with it), the two kinds of key
interleaved (one sample of each per round, the order alternating), and prints
the median and p90 of each and the relative gap of the medians. Bounded:
--samples rounds, stopped early after DEADLINE seconds.

    .venv/bin/python bench/key_lookup_timing.py [--samples 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.postgres import create_database, running_cluster

from postwarden_admin_api.context import Role
from postwarden_admin_api.keys import create_key, split_key, verify_key
from postwarden_store import connect, migrate_database

WARM_UP = 50
DEADLINE = 60.0  # seconds of sampling at most


async def _run(dsn: str, samples: int) -> None:
    conn = await connect(dsn)
    try:
        good = await create_key(conn, Role.AUDITOR, "bench-key-lookup")
        key_id, secret = split_key(good) or ("", "")
        kinds = {
            "wrong secret": f"pw_{key_id}_{secret[:-2]}zz",
            "unknown id": f"pw_{'0' * 16}_{secret}",
        }
        for _ in range(WARM_UP):  # plans and caches
            for key in kinds.values():
                assert await verify_key(conn, key) is None
        times: dict[str, list[float]] = {label: [] for label in kinds}
        order = list(kinds.items())
        stop_at = time.monotonic() + DEADLINE
        for i in range(samples):
            if time.monotonic() > stop_at:
                print(f"stopped after {i} rounds ({DEADLINE:g} s)")
                break
            for label, key in order if i % 2 else reversed(order):
                started = time.perf_counter()
                assert await verify_key(conn, key) is None
                times[label].append(time.perf_counter() - started)
    finally:
        await conn.close()
    medians = {}
    for label, taken in times.items():
        medians[label] = statistics.median(taken)
        p90 = statistics.quantiles(taken, n=10)[8]
        print(f"  {label:12}  median {medians[label] * 1e6:8.1f} us  p90 {p90 * 1e6:8.1f} us"
              f"  ({len(taken)} samples)")
    wrong, unknown = medians["wrong secret"], medians["unknown id"]
    print(f"  gap of the medians: {abs(wrong - unknown) / max(wrong, unknown):.1%}"
          f" ({(unknown - wrong) * 1e6:+.1f} us unknown id minus wrong secret)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    samples = max(10, min(args.samples, 100_000))
    print(f"verify_key, {samples} interleaved rounds, one connection")
    with running_cluster() as cluster:
        dsn = cluster.dsn(asyncio.run(create_database(cluster.admin_dsn, prefix="pwbench")))
        asyncio.run(migrate_database(dsn))
        asyncio.run(_run(dsn, samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
