"""Messages per second through a real Postfix, bare and with the postwarden milter.

Two private Postfix instances (tests/fixtures/postfix.py) relay to one
`smtp-sink` on loopback: one bare, one with `smtpd_milters` pointing at the
milter (audit log in a throwaway Postgres). `smtp-source` sends at concurrency
16, one message per connection, three messages:

    plain-4k    a 4 KB text/plain message
    html-60k    a 60 KB HTML newsletter (multipart/alternative), sanitized
    attach-2m   a 2 MB message with a PDF attachment

The milter runs the example policies as mail from the Internet meets them: they
count loopback as one of our networks (sendmail(1), the send API's listener), and
smtp-source sends only from loopback, so by default they run with loopback taken
out of their internal networks (see examples_from_outside). Mail from one of us is
searched for credentials (a body rule: its HTML rendered twice) and not tagged;
`--policy-dir policies/examples` measures that instead.

With --floor, a third instance uses bench/null_milter.py, a pymilter filter
that reads everything and changes nothing: the ceiling for any pymilter
filter on this machine, printed as its own ratio to bare.

With --naive, a side uses bench/naive_milter.py: the naive filter the
milter issue quotes figures for (the email package and nh3, nothing else).

With --c-floor, another instance uses bench/null_milter.c, the same filter
in C against libmilter (built with cc at start): what libmilter and Postfix's
milter protocol cost without Python.

--processes N [M ...] runs postwarden with N worker processes (its
`processes` setting), one side per value ("milter" for 1, "milterN" else);
a side's filter CPU is that of the parent and all its workers.

--checkout DIR (repeatable) also runs postwarden from another checkout (its
milter, policies and store sources; the database is migrated by this one, so an
older commit), a side named after the directory: a change and its parent
compared in one interleaved series, e.g.
`git worktree add /tmp/before HEAD~1` then `--checkout /tmp/before`.

Postfix reaches the milters on unix sockets, as contrib/postfix recommends;
--inet uses loopback TCP instead. Over TCP, each message stalls for tens of
milliseconds in the socket layer whatever the filter does (a do-nothing
filter written in C against libmilter measured 330 msg/s over TCP with a
core idle, 590 over a unix socket, bare Postfix ~1000).

Runs are interleaved (round 1: bare, milter for each message; round 2: ...)
so machine noise hits both sides alike. Printed: the median over rounds of
messages accepted per second (wall time of smtp-source) for each side, and
the median of the per-round ratios milter/bare. Every run is checked:
Postfix queued all N messages and refused none, and the milter counted N
transactions, all accepted (its metrics).
Each run is bounded by --timeout seconds.

Last, the CPU each message cost in each side's processes (bench/cpu.py):
Postfix (master and its children), the filter, Postgres (the audit log),
and how busy the machine's cores were while smtp-source sent. Where they
were all busy, a side's rate goes roughly as the inverse of its total:
these figures say what a ratio to bare can reach.

    .venv/bin/python bench/milter_throughput.py [--rounds 3] [--scale 1.0] [--floor]
        [--naive] [--c-floor] [--processes N ...] [--checkout DIR ...] [--inet]
        [--only plain-4k|html-60k|attach-2m ...]
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

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
from tests.fixtures.milterproc import MilterProcess  # noqa: E402
from tests.fixtures.ports import free_port  # noqa: E402
from tests.fixtures.postfix import PostfixInstance, smtp_sink, wait_for  # noqa: E402
from tests.fixtures.postgres import PostgresCluster, running_cluster  # noqa: E402

CONCURRENCY = 16
EXAMPLES = REPO / "policies" / "examples"
# How the examples list loopback among the networks they count as internal.
LOOPBACK_INTERNAL = ', 127.0.0.0/8, "::1/128"'
SENDER = "bench@example.org"
RECIPIENT = "sink@example.net"


# --- the messages (LF line ends: smtp-source -F appends CRLF to each line) ---------


def _headers(subject: str, content_type: str) -> str:
    return (
        f"From: Bench <{SENDER}>\nTo: <{RECIPIENT}>\nSubject: {subject}\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\nMIME-Version: 1.0\n"
        f"Content-Type: {content_type}\n"
    )


def plain_4k() -> str:
    rng = random.Random(4)
    words = ["policy", "postfix", "milter", "audit", "report", "quarterly", "budget", "team"]
    lines: list[str] = []
    size = 0
    while size < 3800:
        lines.append(" ".join(rng.choice(words) for _ in range(11)))
        size += len(lines[-1]) + 1
    return _headers("plain 4k", "text/plain; charset=us-ascii") + "\n" + "\n".join(lines) + "\n"


def html_60k() -> str:
    rng = random.Random(60)
    rows = []
    size = 0
    while size < 59500:
        n = rng.randrange(10_000)
        row = (
            f'<tr><td style="padding:8px;font-family:Arial,sans-serif;color:#333">'
            f'<a href="https://news.example.org/item/{n}?utm_source=mail">Item {n}</a> '
            f"<b>special offer</b> for <i>subscribers</i>: read more about topic {n}.</td>"
            f'<td><img src="https://cdn.example.org/img/{n}.png" alt="item {n}" width="80"></td>'
            "</tr>"
        )
        rows.append(row)
        size += len(row) + 1
    html = (
        "<!DOCTYPE html>\n<html><head><title>Newsletter</title></head><body>\n"
        '<table width="600" cellpadding="0" cellspacing="0">\n'
        + "\n".join(rows)
        + "\n</table></body></html>"
    )
    text = "Newsletter: read it in an HTML mail reader.\n"
    return (
        _headers("html 60k", 'multipart/alternative; boundary="b-alt"')
        + "\n--b-alt\nContent-Type: text/plain; charset=us-ascii\n\n" + text
        + "--b-alt\nContent-Type: text/html; charset=us-ascii\n\n" + html
        + "\n--b-alt--\n"
    )


def attach_2m() -> str:
    payload = random.Random(2).randbytes(1_500_000)
    encoded = base64.encodebytes(b"%PDF-1.7\n" + payload).decode()
    return (
        _headers("attachment 2m", 'multipart/mixed; boundary="b-mix"')
        + "\n--b-mix\nContent-Type: text/plain; charset=us-ascii\n\nThe report is attached.\n"
        + "--b-mix\nContent-Type: application/pdf; name=\"report.pdf\"\n"
        + "Content-Disposition: attachment; filename=\"report.pdf\"\n"
        + "Content-Transfer-Encoding: base64\n\n" + encoded
        + "--b-mix--\n"
    )


@dataclass(frozen=True)
class Workload:
    name: str
    path: Path
    messages: int


# --- the servers ----------------------------------------------------------------



@contextmanager
def reference_filter(command: list[str], directory: Path, inet: bool
                     ) -> Iterator[tuple[str, int]]:
    """A reference filter (`command` + its libmilter socket) on a unix socket in
    `directory` (or a free loopback port); yields its address in Postfix's syntax
    and its process id once it accepts."""
    if inet:
        port = free_port()
        spec, postfix_spec = f"inet:{port}@127.0.0.1", f"inet:127.0.0.1:{port}"
    else:
        path = directory / f"{Path(command[-1]).name}.sock"
        spec = postfix_spec = f"unix:{path}"
    proc = subprocess.Popen(
        [*command, spec], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _accepts(port) if inet else path.exists(), timeout=30)
        if not inet:
            path.chmod(0o666)  # for Postfix's smtpd, which runs as postfix
        yield postfix_spec, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def build_c_floor(directory: Path) -> str:
    """Compile bench/null_milter.c (make deps installs cc and libmilter-dev)."""
    binary = directory / "null_milter"
    subprocess.run(
        ["cc", "-O2", "-o", str(binary), str(REPO / "bench" / "null_milter.c"),
         "-lmilter", "-lpthread"],
        check=True, capture_output=True,
    )
    return str(binary)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@contextmanager
def postfix(relay_port: int, milter: str | None) -> Iterator[PostfixInstance]:
    # The smtpd/smtp process limits must exceed the sender's concurrency.
    instance = PostfixInstance(relay_port, milter=milter, main={"default_process_limit": "64"})
    try:
        instance.start()
        yield instance
    finally:
        instance.destroy()


@contextmanager
def database() -> Iterator[PostgresCluster]:
    with running_cluster() as cluster:
        subprocess.run(
            [sys.executable, "-m", "postwarden_store.cli", "migrate",
             "--database-url", cluster.admin_dsn],
            check=True, capture_output=True,
        )
        yield cluster


def milter_counts(metrics_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    counts: dict[str, float] = {}
    for match in re.finditer(r'^postwarden_messages_total\{verdict="([^"]+)"\} (\S+)$', text, re.M):
        counts[match.group(1)] = float(match.group(2))
    return counts


# --- one run ----------------------------------------------------------------------


def _log_count(instance: PostfixInstance, pattern: str) -> int:
    return len(re.findall(pattern, instance.log(), re.MULTILINE))


def run_once(instance: PostfixInstance, work: Workload, timeout: float) -> tuple[float, float]:
    """Send work.messages with smtp-source; check none was refused. Returns messages/s
    and how busy the machine's cores were while smtp-source ran."""
    queued_before = _log_count(instance, r"postfix/cleanup\[\d+\]: \w+: message-id=")
    refused_before = _log_count(instance, r"reject|milter-hold|milter-discard")
    start = time.monotonic()
    with cores_busy() as busy:
        result = subprocess.run(
            ["smtp-source", "-s", str(CONCURRENCY), "-m", str(work.messages), "-F",
             str(work.path), "-f", SENDER, "-t", RECIPIENT, "-M", "client.bench.test",
             f"127.0.0.1:{instance.port}"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    elapsed = time.monotonic() - start
    if result.returncode != 0 or result.stderr.strip():
        raise RuntimeError(f"smtp-source failed: {result.stderr.strip()[:500]}")
    wait_for(
        lambda: _log_count(instance, r"postfix/cleanup\[\d+\]: \w+: message-id=")
        - queued_before >= work.messages,
        timeout=30,
    )
    refused = _log_count(instance, r"reject|milter-hold|milter-discard") - refused_before
    if refused:
        raise RuntimeError(f"{instance.port}: {refused} messages refused or held")
    # Let the relay drain so the next run starts with an empty queue.
    wait_for(lambda: not instance.queue(), timeout=timeout)
    return work.messages / elapsed, busy.fraction


WORKLOADS = (
    ("plain-4k", plain_4k, 2000),
    ("html-60k", html_60k, 1000),
    ("attach-2m", attach_2m, 120),
)


REFERENCE_SCRIPTS = {"floor": "null_milter.py", "naive": "naive_milter.py"}


def reference_modes(args: argparse.Namespace) -> list[str]:
    """The reference filters asked for, in the order their sides run."""
    wanted = {"floor": args.floor, "naive": args.naive, "cfloor": args.c_floor}
    return [mode for mode, on in wanted.items() if on]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--policy-dir", type=Path,
                        help="the milter's policies (default: the examples, loopback "
                        "counted as outside)")
    parser.add_argument("--floor", action="store_true",
                        help="also run a do-nothing pymilter filter (bench/null_milter.py)")
    parser.add_argument("--naive", action="store_true",
                        help="also run the issue's naive filter: the email package and nh3 "
                             "(bench/naive_milter.py)")
    parser.add_argument("--c-floor", action="store_true",
                        help="also run the do-nothing filter in C (bench/null_milter.c)")
    parser.add_argument("--only", choices=[name for name, _, _ in WORKLOADS], action="append",
                        help="run only this message (repeatable)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1],
                        help="postwarden's worker processes (setting `processes`); several "
                        "values: one postwarden side each (milter, milter2, ...)")
    parser.add_argument("--checkout", type=Path, action="append", default=[],
                        help="also run postwarden from this (older) checkout, as a side "
                        "named after its directory")
    parser.add_argument("--inet", action="store_true",
                        help="reach the milters over loopback TCP instead of unix sockets")
    return parser.parse_args(argv)


def examples_from_outside(into: Path) -> Path:
    """A copy of the example policies in ``into`` in which loopback is not internal, so
    the bench's mail is read as mail from the Internet; SystemExit where an example no
    longer lists loopback as the bench expects (the copy would measure something else)."""
    copy = into / "policies"
    shutil.copytree(EXAMPLES, copy)
    for path in sorted(copy.glob("*.yaml")):
        text = path.read_text()
        if text.count(LOOPBACK_INTERNAL) != 1:
            raise SystemExit(f"{path}: its internal networks no longer end in "
                             f"{LOOPBACK_INTERNAL[2:]!r}: update LOOPBACK_INTERNAL")
        path.write_text(text.replace(LOOPBACK_INTERNAL, ""))
    return copy


def start_milters(stack: ExitStack, args: argparse.Namespace, dsn: str
                  ) -> dict[str, tuple[MilterProcess, int]]:
    """One postwarden per --processes value and per --checkout: side name -> (milter,
    its metrics port)."""

    def start(processes: int, env: dict[str, str]) -> tuple[MilterProcess, int]:
        metrics_port = free_port()
        milter = MilterProcess(
            args.policy_dir, dsn,
            env={"POSTWARDEN_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
                 "POSTWARDEN_INSTANCE_NAME": "bench", "POSTWARDEN_LOG_LEVEL": "WARNING",
                 "POSTWARDEN_PROCESSES": str(processes), **env},
            unix_socket=not args.inet,
        )
        stack.callback(milter.destroy)
        milter.start()
        return milter, metrics_port

    milters = {}
    for processes in args.processes:
        milters["milter" if processes == 1 else f"milter{processes}"] = start(processes, {})
    taken = {"bare", *REFERENCE_SCRIPTS, "cfloor", *milters}
    for name, sources in checkout_sides(args.checkout, taken).items():
        milters[name] = start(1, {"PYTHONPATH": sources})
    return milters


def checkout_sides(checkouts: list[Path], taken: set[str]) -> dict[str, str]:
    """Each --checkout's side name (its directory's) and the PYTHONPATH that runs its
    sources, ahead of the virtualenv's editable installs (which point at this checkout);
    SystemExit for a directory without them (the imports would fall back to this
    checkout's code, silently) or a name another side has."""
    sides: dict[str, str] = {}
    for checkout in checkouts:
        root = checkout.resolve()
        sources = [root / part / "src" for part in ("milter", "policies", "store")]
        if missing := [str(path) for path in sources if not path.is_dir()]:
            raise SystemExit(f"--checkout {checkout}: no {', '.join(missing)}")
        if root.name in taken or root.name in sides:
            raise SystemExit(f"--checkout {checkout}: another side is named {root.name!r}")
        sides[root.name] = os.pathsep.join(map(str, sources))
    return sides


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    print(interpreter())
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pw-bench-")))
        tmp.chmod(0o755)  # the null milter's socket is in it
        if args.policy_dir is None:
            args.policy_dir = examples_from_outside(tmp)
            print("policies: the examples, with loopback counted as outside")
        workloads = []
        for name, build, count in WORKLOADS:
            if args.only and name not in args.only:
                continue
            path = tmp / f"{name}.eml"
            path.write_text(build())
            workloads.append(Workload(name, path, max(CONCURRENCY, int(count * args.scale))))

        sink_port = free_port()
        stack.enter_context(smtp_sink(sink_port))
        cluster = stack.enter_context(database())
        milters = start_milters(stack, args, cluster.admin_dsn)
        postmaster = cluster.postmaster_pid()

        def side(mode: str, milter_spec: str | None, filter_pid: int | None
                 ) -> tuple[str, PostfixInstance, dict[str, list[int | None]]]:
            """(name, Postfix instance, the process groups whose CPU is counted)"""
            instance = stack.enter_context(postfix(sink_port, milter_spec))
            return mode, instance, {"postfix": [instance.master_pid()], "filter": [filter_pid],
                                    "postgres": [postmaster]}

        sides = [side("bare", None, None)]
        for mode in reference_modes(args):
            command = [build_c_floor(tmp)] if mode == "cfloor" else \
                [sys.executable, str(REPO / "bench" / REFERENCE_SCRIPTS[mode])]
            sides.append(side(mode, *stack.enter_context(
                reference_filter(command, tmp, args.inet))))
        for mode, (milter, _) in milters.items():
            sides.append(side(mode, milter.postfix_spec, milter.pid))

        rates: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[dict[str, float]]] = {}
        busy: dict[tuple[str, str], list[float]] = {}
        for round_no in range(1, args.rounds + 1):
            for work in workloads:
                for mode, instance, groups in sides:
                    ours = milters.get(mode)
                    before = milter_counts(ours[1]) if ours else {}
                    with measured(groups) as used:
                        rate, busy_share = run_once(instance, work, args.timeout)
                    if ours:
                        _check_milter_saw(ours[1], before, work.messages)
                    rates.setdefault((work.name, mode), []).append(rate)
                    busy.setdefault((work.name, mode), []).append(busy_share)
                    cpu.setdefault((work.name, mode), []).append(
                        per_message_ms(used, work.messages))
                    print(f"round {round_no} {work.name:10} {mode:7} {rate:8.1f} msg/s",
                          flush=True)

        transport = "loopback TCP" if args.inet else "unix sockets"
        print(f"\nmedian of {args.rounds} interleaved rounds, concurrency {CONCURRENCY}, "
              f"milters on {transport}:")
        others = [mode for mode, _, _ in sides[1:]]
        print(f"{'message':10} {'count':>6} {'bare msg/s':>11}"
              + "".join(f" {mode + ' msg/s':>13} {mode + ' ratio':>12}" for mode in others))
        for work in workloads:
            bare_rates = rates[(work.name, "bare")]
            line = f"{work.name:10} {work.messages:6d} {statistics.median(bare_rates):11.1f}"
            for mode in others:
                side_rates = rates[(work.name, mode)]
                # Each round's runs were back to back: the ratio within a round is least noisy.
                ratio = statistics.median(
                    m / b for m, b in zip(side_rates, bare_rates, strict=True))
                line += f" {statistics.median(side_rates):13.1f} {ratio:12.0%}"
            print(line)
        print_cpu(workloads, [mode for mode, _, _ in sides], cpu, busy)
    return 0


def print_cpu(workloads: list[Workload], modes: list[str],
              cpu: dict[tuple[str, str], list[dict[str, float]]],
              busy: dict[tuple[str, str], list[float]]) -> None:
    """CPU per message of each side's parts: when the cores are all busy, a side's rate
    goes as the inverse of its total. "busy": how busy the machine's cores were while
    smtp-source sent; below ~99% a side also waits on something other than CPU."""
    names = ["postfix", "filter", "postgres"]
    print("\nCPU per message, ms (median of the rounds; smtp-source and smtp-sink, the "
          "same for every side, not counted), and how busy the cores were:")
    print(f"{'message':10} {'side':7}" + header_cells(names) + f" {'busy':>6}")
    for work in workloads:
        for mode in modes:
            share = statistics.median(busy[(work.name, mode)])
            print(f"{work.name:10} {mode:7}" + median_cells(cpu[(work.name, mode)], names)
                  + f" {share:6.0%}")


def _check_milter_saw(metrics_port: int, before: dict[str, float], expected: int) -> None:
    """The milter counted `expected` new transactions, all accepted."""

    def delta() -> dict[str, float]:
        after = milter_counts(metrics_port)
        return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}

    seen = wait_for(lambda: (d := delta()) and sum(d.values()) >= expected and d, timeout=30)
    if seen != {"accept": float(expected)}:
        raise RuntimeError(f"milter verdicts for {expected} messages: {seen}")


if __name__ == "__main__":
    sys.exit(main())
