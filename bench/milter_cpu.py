"""The milter's CPU per message in this process, without Postfix: bench/milter_throughput.py's
three messages (plain-4k, html-60k, attach-2m) and its policies (the examples, loopback
counted as outside), each sent through pymilter's TestCtx to the milter's callbacks as
libmilter calls them (header values with their leading space, 64 KB body chunks, the
Received and Message-ID headers Postfix adds), audit events journaled as the milter
does. What its "filter CPU" figure measures, less libmilter, the protocol and the audit
writer; where a change to the callbacks shows before the benchmark is run. Printed: the
median over rounds of process CPU per message, per message shape, then the count of
messages, each accepted and audited (tests/bench/test_milter_cpu.py runs it at its
smallest: --rounds 1 --messages 1); --profile NAME prints cProfile's top functions
for that shape instead (of this thread: attach-2m, past
postwarden_milter.decider.INLINE_BYTES, is decided on the worker pool).

    .venv/bin/python bench/milter_cpu.py [--rounds 7] [--messages 40] [--own-boundaries]
        [--profile plain-4k|html-60k|attach-2m]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import logging
import pstats
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import Milter  # noqa: TID251 - drives the callbacks as libmilter does, through TestCtx
from bench.milter_throughput import (
    RECIPIENT,
    SENDER,
    WORKLOADS,
    examples_from_outside,
)
from Milter.testctx import TestCtx  # noqa: TID251

from postwarden_milter.duplicates import DuplicateDetector
from postwarden_milter.journal import AuditJournal
from postwarden_milter.libmilter import PostwardenMilter
from postwarden_milter.metrics import Metrics
from postwarden_milter.reload import PolicyHolder
from postwarden_milter.services import Services
from postwarden_milter.session import Slots
from postwarden_milter.settings import load_settings
from postwarden_policies import AuditEvent, load_policy_set

CHUNK = 65535  # libmilter's MILTER_CHUNK_SIZE: what Postfix sends a body in
# Settled every so many events, as the audit writer settles a batch.
SETTLE_EVERY = 100


class JournalSink:
    """The audit pipeline's callback side: each event journaled, settled in batches."""

    def __init__(self, journal: AuditJournal) -> None:
        self._journal = journal
        self._held: list[AuditEvent] = []
        self.refusing_mail = False
        self.accepted = 0

    def submit(self, event: AuditEvent, *, refusable: bool = False) -> bool:
        # What the benchmark sends: each message once, every one accepted as it is.
        assert event.action == "accept" and "duplicate" not in event.flags, event
        self.accepted += 1
        self._journal.append(event)
        self._held.append(event)
        if len(self._held) >= SETTLE_EVERY:
            self._journal.rotate()
            self._journal.settled(self._held)
            self._held = []
        return True  # stored (AuditSink.submit): the message is answered as decided


class Ctx(TestCtx):  # type: ignore[misc]
    """TestCtx with the actions TestCtx refuses outside its own _feedFile."""

    def addheader(self, field: str, value: str, idx: int) -> None:
        pass

    def chgheader(self, field: str, idx: int, value: str) -> None:
        pass

    def quarantine(self, reason: str) -> None:
        raise AssertionError(f"quarantined: {reason}")

    def _helo(self, helo: str) -> int:
        # TestCtx closes the connection on anything but CONTINUE; hello is no-reply here.
        self._stage = Milter.M_HELO
        rc: int = self._priv.hello(helo)
        self._stage = None
        return rc


Message = tuple[list[tuple[str, bytes]], bytes]  # header fields, body
_BOUNDARY = re.compile(rb'boundary="([^"]+)"')


def wire(text: str) -> Message:
    """A message as smtp-source sends it (CRLF) and Postfix hands it on: the headers
    (name, value with its leading space, folds as bare LF) and the body."""
    raw = text.replace("\n", "\r\n").encode()
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = []
    for line in head.replace(b"\r\n\t", b"\n\t").replace(b"\r\n ", b"\n ").split(b"\r\n"):
        name, _, value = line.partition(b":")
        headers.append((name.decode(), value))
    return headers, body


def own_boundaries(message: Message, number: int) -> Message:
    """The message with MIME boundaries of its own, as each real message has (the
    benchmark sends one file again and again, and Python's regular expression cache
    hides what a new boundary costs)."""
    headers, body = message
    for value in [value for _, value in headers] + [body]:
        for boundary in _BOUNDARY.findall(value):
            new = boundary + b"-%d" % number
            headers = [(name, value.replace(boundary, new)) for name, value in headers]
            body = body.replace(b"--" + boundary, b"--" + new)
    return headers, body


def postfix_headers(number: int) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """The Received header Postfix puts first and the Message-Id its cleanup adds
    (each message its own: the same id and body again would be a re-delivery)."""
    received = (b" from client.bench.test (localhost [127.0.0.1])\n\tby mx.bench.test "
                b"(Postfix) with ESMTP id 4QBENCH%d\n\tfor <%s>; Mon, 23 Nov 2026 10:00:00 "
                b"+0000 (UTC)" % (number, RECIPIENT.encode()))
    return ("Received", received), ("Message-Id", b" <%d.bench@mx.bench.test>" % number)


def send(headers: list[tuple[str, bytes]], body: bytes, number: int) -> None:
    ctx = Ctx()
    ctx._setsymval("i", f"4QBENCH{number}")
    assert ctx._connect(host="localhost", helo="client.bench.test", ip="127.0.0.1") in (
        Milter.CONTINUE, Milter.NOREPLY)
    assert ctx._envfrom(f"<{SENDER}>") == Milter.CONTINUE
    assert ctx._envrcpt(f"<{RECIPIENT}>") == Milter.CONTINUE
    ctx._data()
    received, message_id = postfix_headers(number)
    for name, value in (received, *headers, message_id):
        ctx._priv.header_bytes(name, value)
    ctx._eoh()
    for start in range(0, len(body), CHUNK):
        ctx._priv.body(body[start:start + CHUNK])
    rc = ctx._eom()
    assert rc in (Milter.CONTINUE, Milter.ACCEPT), rc
    ctx._close()


@contextmanager
def milter() -> Iterator[JournalSink]:
    """The callbacks' services as the milter makes them, with the bench's policies."""
    with tempfile.TemporaryDirectory(prefix="pw-milter-cpu-") as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=4) as workers:
        policy_dir = examples_from_outside(Path(tmp))
        settings = load_settings(None, {
            "POSTWARDEN_POLICY_DIR": str(policy_dir), "POSTWARDEN_SPOOL_DIR": tmp,
            "POSTWARDEN_INSTANCE_NAME": "bench",
        })
        audit = JournalSink(AuditJournal(Path(tmp)))
        PostwardenMilter.services = Services(
            settings=settings, policies=PolicyHolder(load_policy_set([policy_dir])),
            audit=audit, metrics=Metrics(),
            duplicates=DuplicateDetector(settings.duplicate_window_seconds, shared=False),
            slots=Slots(settings.max_concurrency), workers=workers,
        )
        Milter.factory = PostwardenMilter
        yield audit


def messages(shape: Message, first: int, count: int, own: bool) -> list[Message]:
    """``count`` copies of a shape, numbered from ``first`` (each with its own boundaries
    if ``own``: made before they are timed)."""
    return [own_boundaries(shape, n) if own else shape for n in range(first, first + count)]


def cpu_ms_per_message(batch: list[Message], first: int) -> float:
    start = time.process_time()
    for number, (headers, body) in enumerate(batch, first):
        send(headers, body, number)
    return (time.process_time() - start) * 1000 / len(batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--messages", type=int, default=40, help="per shape and round")
    parser.add_argument("--profile", choices=[name for name, _, _ in WORKLOADS])
    parser.add_argument("--own-boundaries", action="store_true",
                        help="each message its own MIME boundaries, as in real mail")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)  # as the benchmark runs the milter
    shapes = {name: wire(build()) for name, build, _ in WORKLOADS}
    with milter() as audit:
        if args.profile:
            batch = messages(shapes[args.profile], 1, args.messages, args.own_boundaries)
            profile = cProfile.Profile()
            profile.runcall(cpu_ms_per_message, batch, 1)
            pstats.Stats(profile).sort_stats("tottime").print_stats(30)
            return 0
        results: dict[str, list[float]] = {name: [] for name in shapes}
        number = 0
        for _ in range(args.rounds):  # interleaved: the machine's noise hits every shape
            for name, shape in shapes.items():
                batch = messages(shape, number, args.messages, args.own_boundaries)
                results[name].append(cpu_ms_per_message(batch, number))
                number += args.messages
        assert audit.accepted == number, (audit.accepted, number)
    print(f"process CPU per message, ms (median of {args.rounds} rounds of "
          f"{args.messages}{', own boundaries' if args.own_boundaries else ''}):")
    for name, values in results.items():
        print(f"{name:10} {statistics.median(values):7.3f}   (min {min(values):.3f})")
    print(f"{audit.accepted} messages, each accepted and audited")
    return 0


if __name__ == "__main__":
    sys.exit(main())
