"""The send API against raw SMTP submission to the same Postfix.

Setup: a throwaway Postgres, a private Postfix (tests/fixtures/postfix.py)
with the send API's submission listener (contrib/postfix/master.cf.send-api)
relaying to `smtp-sink`, and the admin service as a subprocess
(`python -m postwarden_admin_api serve`) with its relay worker and maillog
follower. Postfix runs without a milter, the strictest comparison: every
millisecond the API adds shows.

1. API: N requests (`POST /api/v1/send-email`, ~2 KB text, one recipient)
   at concurrency 32 from an aiohttp client. Reported: accepted requests
   per second (202 answers / wall time), p50 and p99 latency, and delivered
   messages per second (from the first request until Postfix's log shows all
   N `status=sent`).
2. Raw: the same N messages, built exactly as the API builds them, submitted
   by 32 threads with smtplib (one connection each, reused) to the same
   listener; delivered messages per second measured the same way.

Each round runs both phases back to back (API, then raw) so machine noise hits
both alike; printed are each round's figures and the medians over rounds
(the ratio is the median of the rounds' ratios). Every phase is bounded by
--timeout seconds. Last, the CPU per message of each phase in the service, in
Postgres and in Postfix (bench/cpu.py), and how busy the cores were while
each phase's load was sent: where they were all busy, a rate goes as the
inverse of its total.

Postfix fsyncs every queue file; the throwaway Postgres does not wait for the
disk unless --durable says so.

    .venv/bin/python bench/send_api.py [--messages 2000] [--rounds 3] [--timeout 120]
        [--durable]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import smtplib
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cpu import cores_busy, header_cells, measured, median_cells, per_message_ms  # noqa: E402
from tests.fixtures.ports import free_port  # noqa: E402
from tests.fixtures.postfix import (  # noqa: E402
    PostfixInstance,
    master_cf_options,
    smtp_sink,
    wait_for,
)
from tests.fixtures.postgres import (  # noqa: E402
    DURABLE_SETTINGS,
    create_database,
    running_cluster,
)

from postwarden_admin_api.context import Role  # noqa: E402
from postwarden_admin_api.keys import create_key  # noqa: E402
from postwarden_admin_api.runtime_settings import apply_changes  # noqa: E402
from postwarden_admin_api.secrets import Keyring  # noqa: E402
from postwarden_admin_api.send.build import build_message, new_message_id  # noqa: E402
from postwarden_admin_api.send.request_model import Caps, parse_request  # noqa: E402
from postwarden_store import apply_migrations, connect  # noqa: E402

CONCURRENCY = 32
SETTLE_SECONDS = 1.0  # two of the maillog follower's polls
SECRET_KEY = "22" * 32  # bench only
SNIPPET = REPO / "contrib" / "postfix" / "master.cf.send-api"
TEXT = ("The quarterly report is attached below in plain words. " * 36)[:2000]


def request_body(n: int, run: str) -> dict[str, Any]:
    return {"from": "Bench <bench@example.com>", "to": [f"r{n}-{run}@example.net"],
            "subject": f"bench {run} #{n}", "text": TEXT}



async def prepare_database(dsn: str) -> str:
    conn = await connect(dsn)
    try:
        await apply_migrations(conn)
        await apply_changes(conn, Keyring(None), {
            "allowed_sender_addresses": ["*@example.com"],
            "outbound_per_key_per_minute": 1_000_000,
            "outbound_per_recipient_per_day": 1_000_000,
            "outbound_per_key_per_day": 100_000_000,
        }, "bench")
        return await create_key(conn, Role.SENDER, "bench", ["*@example.com"])
    finally:
        await conn.close()


@contextmanager
def service(dsn: str, port: int, relay_port: int, maillog: Path) -> Iterator[int]:
    """The admin service with its relay and maillog follower; yields its process id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    env.update({
        "POSTWARDEN_DATABASE_URL": dsn, "POSTWARDEN_LISTEN": f"127.0.0.1:{port}",
        "POSTWARDEN_SECRET_KEY": SECRET_KEY, "POSTWARDEN_REQUESTS_PER_MINUTE": "10000000",
        "POSTWARDEN_POOL_MAX_SIZE": "20", "POSTWARDEN_RELAY_HOST": "127.0.0.1",
        "POSTWARDEN_RELAY_PORT": str(relay_port), "POSTWARDEN_RELAY_BACKOFF_SECONDS": "1",
        "POSTWARDEN_MAILLOG_PATH": str(maillog),
    })
    proc = subprocess.Popen([sys.executable, "-m", "postwarden_admin_api", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _healthy(port), timeout=30)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _healthy(port: int) -> bool:
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def wait_delivered(maillog: Path, run: str, count: int, deadline: float) -> float:
    """When Postfix's log shows `count` deliveries of this run; only new lines are read."""
    pattern = re.compile(rb"to=<r\d+-" + run.encode() + rb"@example\.net>.* status=sent")
    seen, tail = 0, b""
    with maillog.open("rb") as log:
        while True:
            lines = (tail + log.read()).split(b"\n")
            tail = lines.pop()  # a line still being written
            seen += sum(1 for line in lines if pattern.search(line))
            if seen >= count:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {seen} of {count} delivered")
            time.sleep(0.05)


async def api_load(port: int, key: str, count: int, run: str, deadline: float
                   ) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    headers = {"Authorization": f"Bearer {key}"}
    url = f"http://127.0.0.1:{port}/api/v1/send-email"
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty() and time.monotonic() < deadline:
                n = queue.get_nowait()
                started = time.perf_counter()
                async with session.post(url, json=request_body(n, run), headers=headers) as r:
                    await r.read()
                    if r.status != 202:
                        raise RuntimeError(f"request {n}: HTTP {r.status}")
                latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return latencies, time.monotonic() - started


def raw_messages(count: int, run: str) -> list[tuple[str, str, bytes]]:
    caps = Caps(50, 10_000_000, 10_000_000)
    now = dt.datetime.now(dt.UTC)
    built = []
    for n in range(count):
        request = parse_request(request_body(n, run), caps, lambda m: True)
        data = build_message(request, new_message_id(request.sender, uuid.uuid4()), now)
        built.append((request.sender.address, request.to[0].address, data))
    return built


def raw_load(port: int, messages: list[tuple[str, str, bytes]], deadline: float) -> None:
    shares = [messages[i::CONCURRENCY] for i in range(CONCURRENCY)]

    def submit(share: list[tuple[str, str, bytes]]) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            for sender, recipient, data in share:
                if time.monotonic() > deadline:
                    return
                smtp.sendmail(sender, [recipient], data)

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(submit, shares))


@dataclass(frozen=True)
class Round:
    accepted: float  # requests/s
    p50: float  # seconds
    p99: float
    api_delivered: float  # messages/s
    raw_delivered: float
    api_cpu: dict[str, float]  # ms per message by process group, API phase
    raw_cpu: dict[str, float]
    api_busy: float  # how busy the cores were while the requests were sent
    raw_busy: float  # ... while the raw messages were submitted

    @property
    def ratio(self) -> float:
        return self.api_delivered / self.raw_delivered


def one_round(port: int, key: str, submission: int, maillog: Path,
              groups: dict[str, list[int | None]], *, count: int, timeout: float) -> Round:
    """Each phase's CPU is counted until its last delivery, plus SETTLE_SECONDS for the
    service to apply the last log lines."""
    run = f"api{time.monotonic_ns()}"
    with measured(groups) as api_cpu:
        started = time.monotonic()
        deadline = started + timeout
        with cores_busy() as api_busy:
            latencies, wall = asyncio.run(api_load(port, key, count, run, deadline))
        api_done = wait_delivered(maillog, run, len(latencies), deadline)
        time.sleep(SETTLE_SECONDS)

    raw_run = f"raw{time.monotonic_ns()}"
    messages = raw_messages(count, raw_run)
    with measured(groups) as raw_cpu:
        raw_started = time.monotonic()
        deadline = raw_started + timeout
        with cores_busy() as raw_busy:
            raw_load(submission, messages, deadline)
        raw_done = wait_delivered(maillog, raw_run, count, deadline)
        time.sleep(SETTLE_SECONDS)

    quantiles = statistics.quantiles(latencies, n=100)
    return Round(len(latencies) / wall, quantiles[49], quantiles[98],
                 len(latencies) / (api_done - started), count / (raw_done - raw_started),
                 per_message_ms(api_cpu, len(latencies)), per_message_ms(raw_cpu, count),
                 api_busy.fraction, raw_busy.fraction)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per phase")
    parser.add_argument("--durable", action="store_true",
                        help="PostgreSQL waits for the disk at commit, as Postfix does for "
                             "its queue files (default: the tests' settings, which do not)")
    args = parser.parse_args()
    count = args.messages
    rounds: list[Round] = []
    print(f"messages: {count} per phase, concurrency {CONCURRENCY}, "
          f"{len(TEXT)} bytes of text each")
    with ExitStack() as stack:
        sink_port, api_port = free_port(), free_port()
        stack.enter_context(smtp_sink(sink_port))
        cluster = stack.enter_context(running_cluster(DURABLE_SETTINGS if args.durable else None))
        dsn = cluster.dsn(asyncio.run(create_database(cluster.admin_dsn, "pwbench")))
        key = asyncio.run(prepare_database(dsn))
        postfix = PostfixInstance(sink_port)
        stack.callback(postfix.destroy)
        submission = postfix.add_smtpd_listener(master_cf_options(SNIPPET))
        postfix.start()
        service_pid = stack.enter_context(
            service(dsn, api_port, submission, postfix.maillog))
        groups = {"service": [service_pid], "postgres": [cluster.postmaster_pid()],
                  "postfix": [postfix.master_pid()]}
        for number in range(1, args.rounds + 1):
            result = one_round(api_port, key, submission, postfix.maillog, groups,
                               count=count, timeout=args.timeout)
            rounds.append(result)
            print(f"round {number}: API accepted {result.accepted:6.1f} req/s "
                  f"(p50 {result.p50 * 1000:5.1f} ms, p99 {result.p99 * 1000:5.1f} ms), "
                  f"delivered {result.api_delivered:6.1f} msg/s; raw SMTP delivered "
                  f"{result.raw_delivered:6.1f} msg/s; ratio {result.ratio:4.2f}", flush=True)

    def median(field: Callable[[Round], float]) -> float:
        return statistics.median(field(r) for r in rounds)

    print(f"\nmedian of {args.rounds} rounds (API phase, then raw phase, in each):")
    print(f"API accepted:       {median(lambda r: r.accepted):8.1f} requests/s "
          f"(p50 {median(lambda r: r.p50) * 1000:.1f} ms, "
          f"p99 {median(lambda r: r.p99) * 1000:.1f} ms)")
    print(f"API delivered:      {median(lambda r: r.api_delivered):8.1f} messages/s end to end")
    print(f"raw SMTP delivered: {median(lambda r: r.raw_delivered):8.1f} messages/s end to end")
    print(f"ratio API/raw:      {median(lambda r: r.ratio):8.2f} (median of the rounds' ratios)")
    print("\nCPU per message, ms (median of the rounds; the load generator, this process, "
          "not counted), and how busy the cores were while the load was sent:")
    names = list(groups)
    print(f"{'phase':6}" + header_cells(names) + f" {'busy':>6}")
    print(f"{'API':6}" + median_cells([r.api_cpu for r in rounds], names)
          + f" {median(lambda r: r.api_busy):6.0%}")
    print(f"{'raw':6}" + median_cells([r.raw_cpu for r in rounds], names)
          + f" {median(lambda r: r.raw_busy):6.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
