"""The maillog follower catching up on a busy log, and what that costs the event loop.

A service restarted after a while, or one following a busy mail server's log,
reads up to MAX_READ (4 MiB) per poll. This writes --mebibytes of typical
Postfix lines about other mail (connect, client=, message-id, queue active,
a delivery, removed) to a log that appears after the follower started, so
it reads it from its start, and runs the follower as the service does (a poll,
then POLL_SECONDS' pause) until a poll has read it to its end, against a
throwaway PostgreSQL. Meanwhile a probe on the same event loop asks to wake
every millisecond and records how late it woke: how long an API request
arriving then would wait before its handler even starts (its own work, which
competes for the GIL with the parsing thread, is slower too).

Printed: the catch-up time and rate, the probe's lateness (p50, p99, max),
and the share of the catch-up the loop spent more than 10 ms late (a blocked
loop yields few, long probes, so the quantiles alone flatter it).

    .venv/bin/python bench/maillog_catchup.py [--mebibytes 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.postgres import create_database, running_cluster

from postwarden_admin_api.send.maillog import MaillogFollower
from postwarden_store import apply_migrations, connect, create_pool

PROBE_SECONDS = 0.001
BLOCKED_SECONDS = 0.010
ONE_MESSAGE = (
    "Dec  4 17:00:00 mx postfix/smtpd[1234]: connect from mail.example.net[203.0.113.5]\n"
    "Dec  4 17:00:00 mx postfix/smtpd[1234]: 4Q{n:09d}: client=mail.example.net[203.0.113.5]\n"
    "Dec  4 17:00:00 mx postfix/cleanup[1235]: 4Q{n:09d}: message-id=<{n}.a1b2@example.net>\n"
    "Dec  4 17:00:00 mx postfix/qmgr[1236]: 4Q{n:09d}: from=<s{n}@example.net>, size=4231, "
    "nrcpt=1 (queue active)\n"
    "Dec  4 17:00:00 mx postfix/smtpd[1234]: disconnect from mail.example.net[203.0.113.5] "
    "ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5\n"
    "Dec  4 17:00:01 mx postfix/smtp[1237]: 4Q{n:09d}: to=<u{n}@example.org>, "
    "relay=127.0.0.1[127.0.0.1]:10025, delay=0.11, delays=0.05/0.01/0.02/0.03, dsn=2.0.0, "
    "status=sent (250 2.0.0 Ok: queued as 5R{n:09d})\n"
    "Dec  4 17:00:01 mx postfix/qmgr[1236]: 4Q{n:09d}: removed\n"
)


def write_log(path: Path, size: int) -> int:
    """About ``size`` bytes of other mail's lines; the bytes written."""
    written, n = 0, 0
    with path.open("w") as out:
        while written < size:
            chunk = "".join(ONE_MESSAGE.format(n=n + i) for i in range(1000))
            out.write(chunk)
            written += len(chunk)
            n += 1000
    return written


async def probe(lateness: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        asked = time.monotonic()
        await asyncio.sleep(PROBE_SECONDS)
        lateness.append(time.monotonic() - asked - PROBE_SECONDS)


async def catch_up(dsn: str, log_file: Path, size: int) -> tuple[int, float, list[float]]:
    conn = await connect(dsn)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    pool = await create_pool(dsn, min_size=1, max_size=4)
    try:
        follower = MaillogFollower(pool, log_file)
        await follower.poll()  # takes the lease; the log does not exist yet
        written = write_log(log_file, size)

        lateness: list[float] = []
        stop = asyncio.Event()
        prober = asyncio.create_task(probe(lateness, stop))
        started = time.monotonic()
        reader = asyncio.create_task(follower.run())
        await follower.read_past(started)
        elapsed = time.monotonic() - started
        stop.set()
        follower.stop()
        await asyncio.gather(prober, reader)
        return written, elapsed, lateness
    finally:
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mebibytes", type=float, default=40.0)
    args = parser.parse_args()
    with running_cluster() as cluster, tempfile.TemporaryDirectory() as directory:
        dsn = cluster.dsn(asyncio.run(create_database(cluster.admin_dsn, "pwbench")))
        written, elapsed, lateness = asyncio.run(
            catch_up(dsn, Path(directory) / "maillog", int(args.mebibytes * 1024 * 1024)))
    quantiles = statistics.quantiles(lateness, n=100)
    mib = written / 1024 / 1024
    print(f"caught up on {mib:.1f} MiB of log in {elapsed:.2f} s ({mib / elapsed:.1f} MiB/s)")
    print(f"event loop lateness meanwhile ({len(lateness)} probes every "
          f"{PROBE_SECONDS * 1000:.0f} ms): p50 {quantiles[49] * 1000:.1f} ms, "
          f"p99 {quantiles[98] * 1000:.1f} ms, max {max(lateness) * 1000:.1f} ms")
    blocked = sum(late for late in lateness if late > BLOCKED_SECONDS)
    print(f"more than {BLOCKED_SECONDS * 1000:.0f} ms late: {blocked:.2f} s, "
          f"{blocked / elapsed:.0%} of the catch-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
