"""The send API's enqueue with durable commits: one API key against many.

Each accepted message counts against its key's usage rows, which stay locked
until the enqueue commits; a commit that waited there for the WAL flush made
one key's messages take turns at the disk (postwarden_admin_api.commits).
This runs the service's own enqueue (postwarden_admin_api.send.outbox) from
--concurrency connections against a throwaway PostgreSQL with durable
settings (fsync, synchronous_commit, full_page_writes on), first with the
disk's own flush time and then with a slower disk emulated by `commit_delay`
(every commit waits --flush-ms before its flush, as on network storage), and
prints messages per second and p50/p99 latency for all requests on one key
and for one key per connection. Rounds alternate one key and many.

    .venv/bin/python bench/send_hot_key.py [--messages 2000] [--concurrency 32]
        [--flush-ms 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.postgres import DURABLE_SETTINGS, create_database, running_cluster
from tests.fixtures.submissions import submission

from postwarden_admin_api.send.limits import Limits
from postwarden_admin_api.send.outbox import enqueue
from postwarden_store import connect, create_pool, migrate_database

# commit_siblings 0: commit_delay applies to every commit, not only amid others.
DURABLE = {**DURABLE_SETTINGS, "commit_siblings": "0"}
UNLIMITED = Limits(per_key_per_minute=10**9, per_recipient_per_day=10**9, per_key_per_day=10**9)


async def one_run(dsn: str, *, one_key: bool, count: int, concurrency: int
                  ) -> tuple[float, float, float]:
    """Messages per second, p50 and p99 seconds."""
    pool = await create_pool(dsn, min_size=concurrency, max_size=concurrency)
    latencies: list[float] = []
    left = [count]
    run = uuid.uuid4().hex[:8]

    async def sender(number: int) -> None:
        key = f"hot-{run}" if one_key else f"key{number}-{run}"
        while left[0] > 0:
            left[0] -= 1
            started = time.perf_counter()
            async with pool.acquire() as conn:
                await enqueue(conn, submission(key, f"{uuid.uuid4().hex[:12]}@example.org"),
                              UNLIMITED)
            latencies.append(time.perf_counter() - started)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(sender(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    quantiles = statistics.quantiles(latencies, n=100)
    return count / elapsed, quantiles[49], quantiles[98]


async def series(admin_dsn: str, dsn: str, args: argparse.Namespace) -> None:
    admin = await connect(admin_dsn)
    try:
        for delay_ms in (0.0, args.flush_ms):
            await admin.execute(f"ALTER SYSTEM SET commit_delay = {int(delay_ms * 1000)}")
            await admin.execute("SELECT pg_reload_conf()")
            await asyncio.sleep(0.5)  # every backend reads it at its next statement
            label = "the disk's own" if delay_ms == 0 else f"{delay_ms:g} ms more per"
            print(f"\n{label} flush:")
            for _ in range(args.rounds):
                for one_key in (True, False):
                    rate, p50, p99 = await one_run(dsn, one_key=one_key, count=args.messages,
                                                   concurrency=args.concurrency)
                    who = "one key" if one_key else f"{args.concurrency} keys"
                    print(f"  {who:8}  {rate:7.1f} messages/s  p50 {p50 * 1000:6.1f} ms  "
                          f"p99 {p99 * 1000:6.1f} ms", flush=True)
    finally:
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--flush-ms", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.messages} enqueues per run, {args.concurrency} connections, durable commits")
    with running_cluster(DURABLE) as cluster:
        dsn = cluster.dsn(asyncio.run(create_database(cluster.admin_dsn, "pwbench")))
        asyncio.run(migrate_database(dsn))
        asyncio.run(series(cluster.admin_dsn, dsn, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
