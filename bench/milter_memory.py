"""The milter's resident memory through a private Postfix: idle, after mail, in a burst of
large messages and on hostile shapes.

As bench/milter_throughput.py: a private Postfix (tests/fixtures/postfix.py) with
`smtpd_milters` pointing at the real milter (audit log in a throwaway Postgres), relaying
to `smtp-sink`, `smtp-source` sending from loopback, the example policies with loopback
counted as outside. Phases, in order:

    idle          after start
    steady N      after N messages of each of the throughput benchmark's shapes
                  (plain-4k, html-60k, attach-2m; N their counts there times --scale)
    steady 5N     after 4N more of each: memory that keeps growing would be a leak
    html-240k     --hostile messages with an HTML part of 240 KB, which sanitizer
                  children clean (they stay, and count in the tree from then on)
    burst         --max-concurrency messages of 6 MB at once (past the milter's
                  body_memory_threshold, 4 MiB, so their bodies spool to disk), with the
                  milter's max_concurrency set to that
    hostile       --hostile messages of each: 20,000 MIME parts, a header
                  section of 9,500 fields (1.9 MB), 2,000 nested multiparts, a body of one
                  5 MB line (the part generators are the tests')
    idle after    once it all settled

Memory is that of the milter's process tree (its workers with `--processes` > 1 and its
sanitizer children), from /proc/PID/status: "rss" is VmRSS summed over the tree (pages
forked workers share count in each) once the phase's mail was answered and a second
passed; "peak" the largest such sum sampled every 0.1 s while the phase ran; "hwm" the
largest VmHWM of one process (reset with clear_refs before each phase, so it is the
phase's own). Mail goes 16 at once (fewer if
--max-concurrency is lower, which would refuse some with 421). Every run is bounded by
--timeout seconds, every wait by 30 s; the milter must have counted every message.

    .venv/bin/python bench/milter_memory.py [--scale 0.5] [--processes 1]
        [--max-concurrency 64] [--hostile 16]
"""

from __future__ import annotations

import argparse
import base64
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cpu import interpreter, tree  # noqa: E402
from bench.milter_throughput import (  # noqa: E402
    CONCURRENCY,
    RECIPIENT,
    SENDER,
    WORKLOADS,
    _headers,
    database,
    examples_from_outside,
    html_60k,
    milter_counts,
    postfix,
)
from tests.fixtures.milterproc import MilterProcess  # noqa: E402
from tests.fixtures.ports import free_port  # noqa: E402
from tests.fixtures.postfix import PostfixInstance, smtp_sink, wait_for  # noqa: E402
from tests.policies.test_corpus import _deep, _many_parts  # noqa: E402

LARGE_BYTES = 6_000_000  # past body_memory_threshold (4 MiB), under Postfix's 10 MB limit


# --- the messages past the throughput benchmark's (LF line ends, as smtp-source wants) ---


def large_6m() -> str:
    payload = random.Random(6).randbytes(LARGE_BYTES * 3 // 4)
    return (
        _headers("large 6m", 'multipart/mixed; boundary="b-big"')
        + "\n--b-big\nContent-Type: text/plain; charset=us-ascii\n\nThe data is attached.\n"
        + "--b-big\nContent-Type: application/octet-stream; name=\"data.bin\"\n"
        + "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(payload).decode()
        + "--b-big--\n"
    )


def html_240k() -> str:
    """html-60k with its table four times over and a script: an HTML part past 65,536
    characters with something to remove, which a sanitizer child cleans."""
    message = html_60k().replace("<body>", "<body><script>track()</script>")
    rows = message[message.index("<tr>"):message.rindex("</tr>") + len("</tr>")]
    return message.replace(rows, "\n".join([rows] * 4))


def _lf(raw: bytes) -> str:
    return raw.replace(b"\r\n", b"\n").decode()


def many_headers() -> str:
    fields = "".join(f"X-Bench-{n}: {'v' * 180}\n" for n in range(9_500))
    return _headers("many headers", "text/plain") + fields + "\nbody\n"


def long_line() -> str:
    return _headers("one long line", "text/plain") + "\n" + "x" * 5_000_000 + "\n"


HOSTILE = (
    ("parts-20k", lambda: _lf(_many_parts(20_000))),
    ("headers-9500", many_headers),
    ("nested-2000", lambda: _lf(_deep(2_000))),
    ("line-5m", long_line),
)


# --- memory -------------------------------------------------------------------------


def _status_kb(pid: int, field: str) -> int:
    with suppress(OSError):  # ended meanwhile
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_mib(root: int) -> float:
    return sum(_status_kb(pid, "VmRSS") for pid in tree(root)) / 1024


def hwm_mib(root: int) -> float:
    return max((_status_kb(pid, "VmHWM") for pid in tree(root)), default=0) / 1024


def reset_hwm(root: int) -> None:
    """VmHWM back to VmRSS in each process of the tree (proc(5), clear_refs value 5)."""
    for pid in tree(root):
        with suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Figures:
    processes: int
    rss: float
    peak: float
    hwm: float
    seconds: float


@contextmanager
def sampled(root: int, deadline: float) -> Iterator[list[float]]:
    """The tree's summed RSS every 0.1 s while the block runs (until ``deadline``)."""
    samples = [rss_mib(root)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1) and time.monotonic() < deadline:
            samples.append(rss_mib(root))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join(5)


def phase(root: int, timeout: float, run: Callable[[], None]) -> Figures:
    reset_hwm(root)
    start = time.monotonic()
    with sampled(root, start + timeout + 60) as samples:
        run()
        time.sleep(1)  # the answers out, the transactions' memory freed
    rss = rss_mib(root)
    return Figures(len(tree(root)), rss, max([*samples, rss]), hwm_mib(root),
                   time.monotonic() - start)


# --- sending ------------------------------------------------------------------------


def send(instance: PostfixInstance, metrics_port: int, path: Path, count: int, *,
         concurrency: int, timeout: float) -> None:
    """``count`` copies of the message at ``path``, ``concurrency`` at once; waits until the
    milter counted them all, whatever its verdicts. smtp-source gives up at the first
    refusal (a hostile shape may be refused), cutting off the sessions under way: it is
    run again for those the milter has not counted, at most ``count`` times (each run
    has one counted at least: the refused one)."""
    def counted() -> int:
        return sum(milter_counts(metrics_port).values())

    target = counted() + count
    said = ""
    for _ in range(count):
        left = target - counted()
        if left <= 0:
            break
        result = subprocess.run(
            ["smtp-source", "-s", str(min(concurrency, left)), "-m", str(left), "-F", str(path),
             "-f", SENDER, "-t", RECIPIENT, "-M", "client.bench.test",
             f"127.0.0.1:{instance.port}"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        said = result.stderr.strip()[:500]
        if result.returncode == 0:
            break
        time.sleep(0.5)  # the sessions cut off end in the milter's counts meanwhile
    try:
        wait_for(lambda: counted() >= target, timeout=30)
    except TimeoutError:
        raise RuntimeError(f"{path.name}: the milter did not count {count} messages; "
                           f"smtp-source said: {said}") from None
    wait_for(lambda: not instance.queue(), timeout=timeout)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.5,
                        help="N: the throughput benchmark's message counts times this")
    parser.add_argument("--processes", type=int, default=1, help="the milter's `processes`")
    parser.add_argument("--max-concurrency", type=int, default=64,
                        help="the milter's max_concurrency, and the burst's concurrency")
    parser.add_argument("--hostile", type=int, default=16, help="messages per hostile shape")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    print(interpreter())
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pw-memory-")))
        shapes = [(name, build, max(CONCURRENCY, int(count * args.scale)))
                  for name, build, count in WORKLOADS]
        files = {}
        for name, build in [*[(n, b) for n, b, _ in shapes], ("html-240k", html_240k),
                            ("large-6m", large_6m), *HOSTILE]:
            files[name] = tmp / f"{name}.eml"
            files[name].write_text(build())

        sink_port, metrics_port = free_port(), free_port()
        stack.enter_context(smtp_sink(sink_port))
        cluster = stack.enter_context(database())
        milter = MilterProcess(
            examples_from_outside(tmp), cluster.admin_dsn,
            env={"POSTWARDEN_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
                 "POSTWARDEN_INSTANCE_NAME": "bench", "POSTWARDEN_LOG_LEVEL": "WARNING",
                 "POSTWARDEN_PROCESSES": str(args.processes),
                 "POSTWARDEN_MAX_CONCURRENCY": str(args.max_concurrency)},
            unix_socket=True,
        )
        stack.callback(milter.destroy)
        milter.start()
        instance = stack.enter_context(postfix(sink_port, milter.postfix_spec))
        assert milter.pid is not None
        root = milter.pid

        def sending(*batches: tuple[str, int, int]) -> Callable[[], None]:
            def run() -> None:
                for name, count, concurrency in batches:
                    send(instance, metrics_port, files[name], count,
                         concurrency=concurrency, timeout=args.timeout)
            return run

        rows: list[tuple[str, int, Figures]] = []

        def record(label: str, messages: int, run: Callable[[], None]) -> None:
            rows.append((label, messages, phase(root, args.timeout, run)))
            print(f"{label:14} done", flush=True)

        # Below max_concurrency, the milter refuses none with 421.
        at_once = min(CONCURRENCY, args.max_concurrency)
        time.sleep(2)  # the workers up and settled
        record("idle", 0, lambda: None)
        steady = [(name, count, at_once) for name, _, count in shapes]
        record("steady N", sum(c for _, c, _ in steady), sending(*steady))
        more = [(name, 4 * count, at_once) for name, _, count in shapes]
        record("steady 5N", sum(c for _, c, _ in more), sending(*more))
        record("html-240k", args.hostile, sending(("html-240k", args.hostile, at_once)))
        record("burst 6 MB", args.max_concurrency,
               sending(("large-6m", args.max_concurrency, args.max_concurrency)))
        for name, _ in HOSTILE:
            record(name, args.hostile, sending((name, args.hostile, at_once)))
        record("idle after", 0, lambda: time.sleep(5))
        print_table(rows, args)
        print_processes(root)
    return 0


def print_table(rows: list[tuple[str, int, Figures]], args: argparse.Namespace) -> None:
    print(f"\nmilter memory, MiB (processes {args.processes}, max_concurrency "
          f"{args.max_concurrency}; rss: the tree's VmRSS after the phase, peak: its largest "
          "sample during it, hwm: one process's largest VmHWM in it):")
    print(f"{'phase':14} {'messages':>8} {'procs':>5} {'rss':>8} {'peak':>8} {'hwm':>8} "
          f"{'seconds':>8}")
    for label, messages, f in rows:
        print(f"{label:14} {messages:8d} {f.processes:5d} {f.rss:8.1f} {f.peak:8.1f} "
              f"{f.hwm:8.1f} {f.seconds:8.1f}")


def print_processes(root: int) -> None:
    print("\nthe tree at the end, VmRSS in MiB:")
    for pid in sorted(tree(root)):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        print(f"{pid:8d} {_status_kb(pid, 'VmRSS') / 1024:8.1f}  {command[:90]}")


if __name__ == "__main__":
    sys.exit(main())
