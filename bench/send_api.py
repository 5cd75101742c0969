"""The send API against raw SMTP submission to the same Postfix.

Setup: a throwaway Postgres, a private Postfix (tests/fixtures/postfix.py)
with the send API's submission listener (contrib/postfix/master.cf.send-api)
relaying to `smtp-sink`, and the admin service as a subprocess
(`python -m postwarden_admin_api serve`) with its relay worker and maillog
follower. Postfix runs without a milter, the strictest comparison: every
millisecond the API adds shows.

1. API: N requests (`POST /api/v1/send-email`, ~2 KB text, one recipient)
   over 32 HTTP/1.1 keep-alive connections, each sending its next request
   once the last answer is read. The client is a few lines on asyncio's
   streams, the requests encoded before the clock starts: it reads the status
   line, the headers and the Content-Length body, and counts anything but a
   202 with a JSON object as an error. Reported: accepted requests per second
   (202 answers / wall time), p50 and p99 latency of the 202s, and delivered
   messages per second (from the first request until Postfix's log shows all
   accepted ones `status=sent`).
2. Raw: the same N messages, built exactly as the API builds them before the
   clock starts, submitted over 32 connections to the same listener by the
   relay's own asyncio SMTP client (postwarden_admin_api.send.submit: one
   message per transaction, MAIL, RCPT and DATA pipelined as the relay sends
   them, every reply code checked; anything not queued is an error);
   delivered messages per second measured the same way.

Each round runs both phases back to back (API, then raw) so machine noise hits
both alike; printed are each round's figures and the medians over rounds
(the ratio is the median of the rounds' ratios). Every phase is bounded by
--timeout seconds. Last, the CPU per message of each phase in the service, in
Postgres, in Postfix and in the client (this process alone, following
Postfix's log included; bench/cpu.py), and how busy the cores were while
each phase's load was sent: where they were all busy, a rate goes as the
inverse of its total; and the service's full garbage collections (each stops
every request under way: postwarden_gc_pause_seconds). Errors are printed; the
exit status is 1 when there were any.

Postfix fsyncs every queue file; the throwaway Postgres does not wait for the
disk unless --durable says so.

--accept-only runs only the API phase, against a service whose relay finds
nothing listening (its attempts fail at connect and wait out their backoff) and
which follows no log: what accepting a request costs alone, without the relay,
delivery tracking and Postfix competing for the cores. --statements loads
pg_stat_statements and prints, at the end, the statements PostgreSQL spent most
time in (those inside functions too; a time includes waits for row locks).
--unix-socket has the service reach PostgreSQL over its unix socket instead of
loopback TCP, as a host running both would (over TCP, each statement's packets
go through the TCP stack of both ends, on the sender's CPU).

    .venv/bin/python bench/send_api.py [--messages 2000] [--rounds 3] [--timeout 120]
        [--durable] [--accept-only] [--statements] [--unix-socket]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cpu import (  # noqa: E402
    cores_busy,
    header_cells,
    interpreter,
    measured,
    median_cells,
    per_message_ms,
)
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
from postwarden_admin_api.send.relay import SMTP_TIMEOUT  # noqa: E402
from postwarden_admin_api.send.request_model import Caps, parse_request  # noqa: E402
from postwarden_admin_api.send.submit import Outcome, SmtpSession  # noqa: E402
from postwarden_store import apply_migrations, connect  # noqa: E402

CONCURRENCY = 32
MAX_HEADERS = 100  # header lines of one answer: more is a broken server
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
def service(dsn: str, port: int, relay_port: int, maillog: Path | None) -> Iterator[int]:
    """The admin service with its relay and (given a log) maillog follower; yields its
    process id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    env.update({
        "POSTWARDEN_DATABASE_URL": dsn, "POSTWARDEN_LISTEN": f"127.0.0.1:{port}",
        "POSTWARDEN_SECRET_KEY": SECRET_KEY, "POSTWARDEN_REQUESTS_PER_MINUTE": "10000000",
        "POSTWARDEN_POOL_MAX_SIZE": "20", "POSTWARDEN_RELAY_HOST": "127.0.0.1",
        "POSTWARDEN_RELAY_PORT": str(relay_port), "POSTWARDEN_RELAY_BACKOFF_SECONDS": "1",
    })
    if maillog is not None:
        env["POSTWARDEN_MAILLOG_PATH"] = str(maillog)
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


def full_collections(port: int) -> str:
    """The service's full garbage collections so far (postwarden_gc_pause_seconds,
    generation 2): each stops every request under way."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        exposition = answer.read().decode()
    samples = [sample for family in text_string_to_metric_families(exposition)
               for sample in family.samples if sample.labels.get("generation") == "2"]
    count = next((s.value for s in samples if s.name.endswith("_count")), 0.0)
    total = next((s.value for s in samples if s.name.endswith("_sum")), 0.0)
    # The longest: under the first bucket that holds them all.
    longest = min((float(s.labels["le"]) for s in samples
                   if s.name.endswith("_bucket") and s.value == count), default=math.inf)
    return (f"{count:.0f} full garbage collections in the service, {total * 1000:.1f} ms "
            f"in all, the longest under {longest * 1000:g} ms")


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


class HttpError(Exception):
    """An answer the API client does not count as accepted."""


def api_requests(port: int, key: str, count: int, run: str) -> list[bytes]:
    """The N requests, encoded before the clock starts."""
    head = (f"POST /api/v1/send-email HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n")
    requests = []
    for n in range(count):
        body = json.dumps(request_body(n, run)).encode()
        requests.append(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return requests


async def read_accepted(reader: asyncio.StreamReader) -> bool:
    """Read one answer; raise HttpError unless it is a 202 with a JSON object. True when
    the server keeps the connection open."""
    status = await reader.readline()
    headers: dict[bytes, bytes] = {}
    for _ in range(MAX_HEADERS):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    else:
        raise HttpError("too many header lines")
    if b"content-length" not in headers:
        raise HttpError(f"no Content-Length: {status!r}")
    body = await reader.readexactly(int(headers[b"content-length"]))
    if status.split(b" ", 2)[1:2] != [b"202"]:
        raise HttpError(f"status line {status!r}")
    if not headers.get(b"content-type", b"").startswith(b"application/json") \
            or not isinstance(json.loads(body), dict):
        raise HttpError("not a JSON object")
    return headers.get(b"connection") != b"close" and status.startswith(b"HTTP/1.1 ")


async def api_load(port: int, requests: list[bytes], deadline: float
                   ) -> tuple[list[float], int, float]:
    """Latencies of the 202s, the count of anything else, and the wall time.

    CONCURRENCY keep-alive connections over raw streams, each sending its next request
    once the answer to the last one is read; one that fails, or that the server closes,
    is opened again."""
    latencies: list[float] = []
    errors = 0
    todo = iter(requests)

    async def connection() -> None:
        nonlocal errors
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            for request in todo:  # shared: each request goes out once
                started = time.perf_counter()
                try:
                    if streams is None:
                        streams = await asyncio.open_connection("127.0.0.1", port)
                    streams[1].write(request)
                    keep = await read_accepted(streams[0])
                    latencies.append(time.perf_counter() - started)
                except (OSError, EOFError, ValueError, HttpError):  # ValueError: not HTTP
                    errors += 1
                    keep = False
                if not keep and streams is not None:
                    streams[1].close()
                    streams = None
        finally:
            if streams is not None:
                streams[1].close()

    started = time.monotonic()
    async with asyncio.timeout(deadline - started):
        await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    return latencies, errors, time.monotonic() - started


def raw_messages(count: int, run: str) -> list[tuple[str, str, bytes]]:
    caps = Caps(50, 10_000_000, 10_000_000)
    now = dt.datetime.now(dt.UTC)
    built = []
    for n in range(count):
        request = parse_request(request_body(n, run), caps, lambda m: True)
        data = build_message(request, new_message_id(request.sender, uuid.uuid4()), now)
        built.append((request.sender.address, request.to[0].address, data))
    return built


async def raw_load(port: int, messages: list[tuple[str, str, bytes]], deadline: float
                   ) -> tuple[int, int]:
    """(queued, errors). CONCURRENCY SMTP sessions with the relay's own client
    (.send.submit: one message per transaction, PIPELINING and SIZE as the relay uses
    them, every reply code checked); anything but a queued message is an error."""
    queued = errors = 0
    todo = iter(messages)

    async def connection() -> None:
        nonlocal queued, errors
        session = SmtpSession("127.0.0.1", port, SMTP_TIMEOUT, "bench.localhost")
        try:
            for sender, recipient, data in todo:  # shared: each message goes out once
                result = await session.submit(sender, [recipient], data)
                if result.outcome is Outcome.QUEUED:
                    queued += 1
                else:
                    errors += 1
        finally:
            await session.close()

    async with asyncio.timeout(deadline - time.monotonic()):
        await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    return queued, errors


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
    api_errors: int  # answers other than a 202 with a JSON object, failed requests
    raw_errors: int  # messages not queued

    @property
    def ratio(self) -> float:
        return self.api_delivered / self.raw_delivered


def one_round(port: int, key: str, submission: int, maillog: Path,
              groups: dict[str, list[int | None]], *, count: int, timeout: float) -> Round:
    """Each phase's CPU is counted until its last delivery, plus SETTLE_SECONDS for the
    service to apply the last log lines; the client's (this process alone) over the
    same span, so it includes following Postfix's log."""
    client = {"client": os.getpid()}
    run = f"api{time.monotonic_ns()}"
    requests = api_requests(port, key, count, run)
    with measured(groups, client) as api_cpu:
        started = time.monotonic()
        deadline = started + timeout
        with cores_busy() as api_busy:
            latencies, api_errors, wall = asyncio.run(api_load(port, requests, deadline))
        api_done = wait_delivered(maillog, run, len(latencies), deadline)
        time.sleep(SETTLE_SECONDS)

    raw_run = f"raw{time.monotonic_ns()}"
    messages = raw_messages(count, raw_run)
    with measured(groups, client) as raw_cpu:
        raw_started = time.monotonic()
        deadline = raw_started + timeout
        with cores_busy() as raw_busy:
            queued, raw_errors = asyncio.run(raw_load(submission, messages, deadline))
        raw_done = wait_delivered(maillog, raw_run, queued, deadline)
        time.sleep(SETTLE_SECONDS)

    if len(latencies) < 2 or not queued:
        raise RuntimeError(f"{api_errors} requests and {raw_errors} messages of {count} failed")
    quantiles = statistics.quantiles(latencies, n=100)
    return Round(len(latencies) / wall, quantiles[49], quantiles[98],
                 len(latencies) / (api_done - started), queued / (raw_done - raw_started),
                 per_message_ms(api_cpu, len(latencies)), per_message_ms(raw_cpu, queued),
                 api_busy.fraction, raw_busy.fraction, api_errors, raw_errors)


TOP_STATEMENTS = """
SELECT calls, total_exec_time, mean_exec_time, query FROM pg_stat_statements
ORDER BY total_exec_time DESC LIMIT 15
"""


async def fetch(dsn: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query)
    finally:
        await conn.close()
    return rows


def print_statements(dsn: str) -> None:
    print("\nstatements PostgreSQL spent most time in (ms in all, calls, mean us):")
    for row in asyncio.run(fetch(dsn, TOP_STATEMENTS)):
        print(f"{row['total_exec_time']:9.1f} {row['calls']:7d} "
              f"{row['mean_exec_time'] * 1000:8.1f}  {' '.join(row['query'].split())[:110]}")


def accept_only(port: int, key: str, groups: dict[str, list[int | None]], *,
                count: int, rounds: int, timeout: float) -> int:
    """The API phase alone, ``rounds`` times; prints each round and the medians."""
    results = []
    for number in range(1, rounds + 1):
        requests = api_requests(port, key, count, f"accept{time.monotonic_ns()}")
        with measured(groups, {"client": os.getpid()}) as cpu, cores_busy() as busy:
            latencies, errors, wall = asyncio.run(
                api_load(port, requests, time.monotonic() + timeout))
        if len(latencies) < 2:
            raise RuntimeError(f"{errors} requests of {count} failed")
        quantiles = statistics.quantiles(latencies, n=100)
        results.append((len(latencies) / wall, quantiles[49], quantiles[98],
                        per_message_ms(cpu, len(latencies)), busy.fraction, errors))
        print(f"round {number}: API accepted {results[-1][0]:6.1f} req/s (p50 "
              f"{quantiles[49] * 1000:5.1f} ms, p99 {quantiles[98] * 1000:5.1f} ms); "
              f"errors {errors}", flush=True)
    print(f"\nmedian of {rounds} rounds, accepting only: "
          f"{statistics.median(r[0] for r in results):.1f} requests/s "
          f"(p50 {statistics.median(r[1] for r in results) * 1000:.1f} ms, "
          f"p99 {statistics.median(r[2] for r in results) * 1000:.1f} ms)")
    names = [*groups, "client"]
    print("CPU per request, ms (median of the rounds):")
    print(f"{'phase':6}" + header_cells(names) + f" {'busy':>6}")
    print(f"{'accept':6}" + median_cells([r[3] for r in results], names)
          + f" {statistics.median(r[4] for r in results):6.0%}")
    return 1 if any(r[5] for r in results) else 0


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per phase")
    parser.add_argument("--durable", action="store_true",
                        help="PostgreSQL waits for the disk at commit, as Postfix does for "
                             "its queue files (default: the tests' settings, which do not)")
    parser.add_argument("--accept-only", action="store_true",
                        help="only the API phase, with no relay target and no log to follow")
    parser.add_argument("--statements", action="store_true",
                        help="print the statements PostgreSQL spent most time in")
    parser.add_argument("--unix-socket", action="store_true",
                        help="the service reaches PostgreSQL over its unix socket, as on a "
                             "host that runs both (default: loopback TCP)")
    return parser.parse_args()


def main() -> int:
    args = parse_arguments()
    count = args.messages
    rounds: list[Round] = []
    print(f"{interpreter()}\nmessages: {count} per phase, concurrency {CONCURRENCY}, "
          f"{len(TEXT)} bytes of text each; PostgreSQL over "
          + ("its unix socket" if args.unix_socket else "loopback TCP"))
    with ExitStack() as stack:
        sink_port, api_port = free_port(), free_port()
        settings = dict(DURABLE_SETTINGS) if args.durable else {}
        if args.statements:
            settings.update({"shared_preload_libraries": "pg_stat_statements",
                             "pg_stat_statements.track": "all"})
        cluster = stack.enter_context(running_cluster(settings, args.unix_socket))
        name = asyncio.run(create_database(cluster.admin_dsn, "pwbench"))
        dsn = cluster.unix_dsn(name) if args.unix_socket else cluster.dsn(name)
        key = asyncio.run(prepare_database(dsn))
        if args.statements:
            asyncio.run(fetch(dsn, "CREATE EXTENSION pg_stat_statements"))
            stack.callback(print_statements, dsn)
        if args.accept_only:  # nothing listens on the relay's port: each attempt fails
            service_pid = stack.enter_context(service(dsn, api_port, free_port(), None))
            return accept_only(api_port, key, {"service": [service_pid],
                                               "postgres": [cluster.postmaster_pid()]},
                               count=count, rounds=args.rounds, timeout=args.timeout)
        stack.enter_context(smtp_sink(sink_port))
        postfix = PostfixInstance(sink_port)
        stack.callback(postfix.destroy)
        submission = postfix.add_smtpd_listener(master_cf_options(SNIPPET))
        postfix.start()
        service_pid = stack.enter_context(
            service(dsn, api_port, submission, postfix.maillog))
        groups: dict[str, list[int | None]] = {
            "service": [service_pid], "postgres": [cluster.postmaster_pid()],
            "postfix": [postfix.master_pid()]}
        for number in range(1, args.rounds + 1):
            result = one_round(api_port, key, submission, postfix.maillog, groups,
                               count=count, timeout=args.timeout)
            rounds.append(result)
            print(f"round {number}: API accepted {result.accepted:6.1f} req/s "
                  f"(p50 {result.p50 * 1000:5.1f} ms, p99 {result.p99 * 1000:5.1f} ms), "
                  f"delivered {result.api_delivered:6.1f} msg/s; raw SMTP delivered "
                  f"{result.raw_delivered:6.1f} msg/s; ratio {result.ratio:4.2f}; errors "
                  f"API {result.api_errors}, raw {result.raw_errors}", flush=True)
        collections = full_collections(api_port)

    def median(field: Callable[[Round], float]) -> float:
        return statistics.median(field(r) for r in rounds)

    print(f"\nmedian of {args.rounds} rounds (API phase, then raw phase, in each):")
    print(f"API accepted:       {median(lambda r: r.accepted):8.1f} requests/s "
          f"(p50 {median(lambda r: r.p50) * 1000:.1f} ms, "
          f"p99 {median(lambda r: r.p99) * 1000:.1f} ms)")
    print(f"API delivered:      {median(lambda r: r.api_delivered):8.1f} messages/s end to end")
    print(f"raw SMTP delivered: {median(lambda r: r.raw_delivered):8.1f} messages/s end to end")
    print(f"ratio API/raw:      {median(lambda r: r.ratio):8.2f} (median of the rounds' ratios)")
    print("\nCPU per message, ms (median of the rounds; client: the load generator, this "
          "process, in the total too), and how busy the cores were while the load was sent:")
    names = [*groups, "client"]
    print(f"{'phase':6}" + header_cells(names) + f" {'busy':>6}")
    print(f"{'API':6}" + median_cells([r.api_cpu for r in rounds], names)
          + f" {median(lambda r: r.api_busy):6.0%}")
    print(f"{'raw':6}" + median_cells([r.raw_cpu for r in rounds], names)
          + f" {median(lambda r: r.raw_busy):6.0%}")
    print(f"\n{collections}")
    errors = sum(r.api_errors + r.raw_errors for r in rounds)
    if errors:
        print(f"\n{errors} error(s): requests not answered 202 with a JSON object, or "
              "messages not queued (counted in no figure above)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
