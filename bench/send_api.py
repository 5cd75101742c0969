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

Every phase is bounded by --timeout seconds.

    .venv/bin/python bench/send_api.py [--messages 2000] [--timeout 120]
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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.ports import free_port  # noqa: E402
from tests.fixtures.postfix import (  # noqa: E402
    PostfixInstance,
    master_cf_options,
    smtp_sink,
    wait_for,
)
from tests.fixtures.postgres import PostgresCluster, create_database  # noqa: E402

from postwarden_admin_api.context import Role  # noqa: E402
from postwarden_admin_api.keys import create_key  # noqa: E402
from postwarden_admin_api.runtime_settings import apply_changes  # noqa: E402
from postwarden_admin_api.secrets import Keyring  # noqa: E402
from postwarden_admin_api.send.build import build_message, new_message_id  # noqa: E402
from postwarden_admin_api.send.request_model import Caps, parse_request  # noqa: E402
from postwarden_store import apply_migrations, connect  # noqa: E402

CONCURRENCY = 32
SECRET_KEY = "22" * 32  # bench only
SNIPPET = REPO / "contrib" / "postfix" / "master.cf.send-api"
TEXT = ("The quarterly report is attached below in plain words. " * 36)[:2000]


def request_body(n: int, run: str) -> dict[str, Any]:
    return {"from": "Bench <bench@example.com>", "to": [f"r{n}-{run}@example.net"],
            "subject": f"bench {run} #{n}", "text": TEXT}



@contextmanager
def postgres() -> Iterator[str]:
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster.dsn(asyncio.run(create_database(cluster.admin_dsn, "pwbench")))
    finally:
        cluster.destroy()


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
def service(dsn: str, port: int, relay_port: int, maillog: Path) -> Iterator[None]:
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
        yield
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


def delivered(maillog: Path, run: str) -> int:
    pattern = re.compile(rf"to=<r\d+-{run}@example\.net>.* status=sent")
    return len(pattern.findall(maillog.read_text(errors="replace")))


def wait_delivered(maillog: Path, run: str, count: int, deadline: float) -> float:
    while delivered(maillog, run) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {delivered(maillog, run)} of {count} delivered")
        time.sleep(0.05)
    return time.monotonic()


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
        data = build_message(request, new_message_id(request.sender), now)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    count = args.messages
    with ExitStack() as stack:
        sink_port, api_port = free_port(), free_port()
        stack.enter_context(smtp_sink(sink_port))
        dsn = stack.enter_context(postgres())
        key = asyncio.run(prepare_database(dsn))
        postfix = PostfixInstance(sink_port)
        stack.callback(postfix.destroy)
        submission = postfix.add_smtpd_listener(master_cf_options(SNIPPET))
        postfix.start()
        stack.enter_context(service(dsn, api_port, submission, postfix.maillog))

        run = "api" + str(int(time.time()))
        started = time.monotonic()
        deadline = started + args.timeout
        latencies, wall = asyncio.run(api_load(api_port, key, count, run, deadline))
        api_done = wait_delivered(postfix.maillog, run, len(latencies), deadline)
        api_delivered = len(latencies) / (api_done - started)

        raw_run = "raw" + str(int(time.time()))
        messages = raw_messages(count, raw_run)
        started = time.monotonic()
        deadline = started + args.timeout
        raw_load(submission, messages, deadline)
        raw_done = wait_delivered(postfix.maillog, raw_run, count, deadline)
        raw_delivered = count / (raw_done - started)

    quantiles = statistics.quantiles(latencies, n=100)
    print(f"messages: {count}, concurrency {CONCURRENCY}, {len(TEXT)} bytes of text each")
    print(f"API accepted:       {len(latencies) / wall:8.1f} requests/s "
          f"(p50 {quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms)")
    print(f"API delivered:      {api_delivered:8.1f} messages/s end to end")
    print(f"raw SMTP delivered: {raw_delivered:8.1f} messages/s end to end")
    print(f"ratio API/raw:      {api_delivered / raw_delivered:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
