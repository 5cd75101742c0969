"""One metrics endpoint for several worker processes.

With ``processes`` > 1 every worker counts in its own :class:`~.metrics.Metrics`,
but Prometheus scrapes one loopback address and must see the whole milter. So
the parent serves ``metrics_listen``: on each scrape it asks every worker for
its exposition over a socket pair made before the fork (:func:`answer_scrapes`
answers in the worker), adds its own registry (worker restarts, skipped
workers) and serves the merge (:func:`merge_expositions`) under the names a
single process exposes, so dashboards need no change.

The merge sums every sample of the same name and labels: counters' ``_total``,
histograms' ``_bucket``/``_count``/``_sum`` (all workers share the buckets),
and gauges, which are all per-process quantities here (connections, audit
queue depth, spool bytes) whose sum is the milter's. ``_created`` series are
dropped: a sum of counters started at different times has no creation time.

Counters and histograms must never go down: Prometheus would read a drop as a
reset and count the whole remaining sum as new (a false spike in ``rate()``
and every alert on it). So a worker that does not answer counts with its last
answer, a worker that is gone keeps counting with its last answer's counters
and histograms (not its gauges), and each summed series is held at the
highest value it has shown (which covers what a dead worker counted after its
last answer, until the others make it up).

Channel protocol: the parent sends one byte per request; the worker answers
each byte with a frame, a 4-byte big-endian length then the exposition. The
parent counts the answers it is owed per channel, so a late answer to a scrape
that gave up on that worker is read and discarded by the next one, and a
partial frame waits in the channel's buffer.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from .metrics import serve_registry

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_SECONDS = 1.0  # a worker's time to answer one scrape
_LENGTH = struct.Struct(">I")
_REQUEST = b"?"
_SUMMED_WITH_CREATED = ("counter", "histogram", "summary")  # types with a _created companion
_CUMULATIVE = ("counter", "histogram")  # what only ever grows: never shown going down
Series = tuple[str, frozenset[tuple[str, str]]]


def merge_expositions(texts: Iterable[str], carried: Iterable[str] = ()) -> list[Metric]:
    """The families of several text expositions, samples of equal name and labels summed;
    from the ``carried`` ones (workers gone) only counters and histograms."""
    families: dict[str, Metric] = {}
    # family name -> (sample name, labels) -> (the labels as first seen, running sum)
    sums: dict[str, dict[tuple[str, frozenset[tuple[str, str]]], tuple[dict[str, str], float]]]
    sums = {}
    parsed_texts = [(text, False) for text in texts] + [(text, True) for text in carried]
    for text, cumulative_only in parsed_texts:
        for parsed in text_string_to_metric_families(text):
            if cumulative_only and parsed.type not in _CUMULATIVE:
                continue
            if parsed.name not in families:  # HELP and TYPE from the first that has it
                families[parsed.name] = Metric(parsed.name, parsed.documentation, parsed.type)
                sums[parsed.name] = {}
            totals = sums[parsed.name]
            for sample in parsed.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                labels, total = totals.get(key, (sample.labels, 0.0))
                totals[key] = (labels, total + sample.value)
    # The text format exposes a counter's or histogram's _created as a gauge family of its own.
    created = {f"{name}_created" for name, family in families.items()
               if family.type in _SUMMED_WITH_CREATED}
    merged: list[Metric] = []
    for name, family in families.items():
        if name in created:
            continue
        for (sample_name, _), (labels, total) in sums[name].items():
            family.add_sample(sample_name, labels, total)
        merged.append(family)
    return merged


def answer_scrapes(registry: CollectorRegistry, channel: socket.socket) -> Callable[[], None]:
    """In a worker: answer the parent's requests on ``channel`` from a daemon thread.

    Returns a function that stops the thread and closes the channel. A channel
    error (the parent gone) only ends the thread: metrics must not stop the milter.
    """

    def answer() -> None:
        try:
            while requests := channel.recv(64):
                exposition: bytes = generate_latest(registry)
                frame = _LENGTH.pack(len(exposition)) + exposition
                for _ in requests:  # one answer per request byte: the parent counts them
                    channel.sendall(frame)
            log.debug("metrics channel closed by the parent")
        except OSError as exc:
            log.debug("metrics channel failed: %s", exc)

    thread = threading.Thread(target=answer, name="postwarden-metrics-answers", daemon=True)
    thread.start()

    def stop() -> None:
        with contextlib.suppress(OSError):  # already shut by the parent
            channel.shutdown(socket.SHUT_RDWR)  # wakes the blocked recv; close alone would not
        thread.join(timeout=5)
        channel.close()

    return stop


@dataclass
class _Child:
    """The parent's reading state of one worker's channel."""

    owed: int = 0  # requests sent and not yet answered
    buffer: bytearray = field(default_factory=bytearray)
    last: str | None = None  # its last answer

    def take_frame(self) -> bytes | None:
        if len(self.buffer) < _LENGTH.size:
            return None
        (size,) = _LENGTH.unpack_from(self.buffer)
        end = _LENGTH.size + size
        if len(self.buffer) < end:
            return None
        body = bytes(self.buffer[_LENGTH.size:end])
        del self.buffer[:end]
        self.owed -= 1
        return body


class MergedMetrics:
    """In the parent: its own metrics, and the endpoint that merges the workers' into them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.worker_restarts = Counter(
            "postwarden_worker_restarts", "Worker processes restarted after they died",
            registry=self.registry,
        )
        self.scrape_failures = Counter(
            "postwarden_worker_scrape_failures",
            "Scrapes that skipped a worker (no answer in time, or its channel failed)",
            registry=self.registry,
        )
        self._children: dict[socket.socket, _Child] = {}
        self._retired: list[str] = []  # the last answers of workers gone
        self._highest: dict[Series, float] = {}  # of each cumulative series shown
        self._lock = threading.Lock()  # the set of channels: the supervisor adds and removes
        self._scrape_lock = threading.Lock()  # one scrape at a time talks on the channels
        # auto_describe=False: registering must not scrape the workers.
        self._endpoint = CollectorRegistry(auto_describe=False)
        self._endpoint.register(self)
        self._server: Any = None

    def add(self, channel: socket.socket) -> None:
        with self._lock:
            self._children[channel] = _Child()

    def remove(self, channel: socket.socket) -> None:
        with self._lock:
            child = self._children.pop(channel, None)
            if child is not None and child.last is not None:
                # One summed text, however many workers have come and gone.
                self._retired = [render(merge_expositions([], [*self._retired, child.last]))]

    def serve(self, address: tuple[str, int]) -> Callable[[], None]:
        """Start the HTTP endpoint; returns a function that stops it."""
        self._server, stop = serve_registry(self._endpoint, address)
        return stop

    def close_in_worker(self) -> None:
        """In a just-forked worker: drop the endpoint's socket and the other workers' channels.

        Takes no lock: the endpoint's thread may have held one at the fork, and
        does not exist in the worker.
        """
        if self._server is not None:
            self._server.socket.close()
        for channel in list(self._children):
            channel.close()

    def collect(self) -> list[Metric]:
        """The endpoint's answer: the workers' metrics and the parent's, merged."""
        with self._scrape_lock:  # one scrape at a time talks on the channels
            # One snapshot of both: a worker removed meanwhile is in one or the other,
            # never counted twice (its last answer would then be held as the highest).
            with self._lock:
                children = list(self._children.items())
                retired = list(self._retired)
            texts = self._ask_workers(children)
            own: bytes = generate_latest(self.registry)  # after the failures are counted
            merged = merge_expositions([*texts, own.decode()], carried=retired)
            for family in merged:
                if family.type in _CUMULATIVE:
                    family.samples = [self._never_lower(sample) for sample in family.samples]
            return merged

    def _never_lower(self, sample: Sample) -> Sample:
        key = (sample.name, frozenset(sample.labels.items()))
        value = max(sample.value, self._highest.get(key, sample.value))
        self._highest[key] = value
        return sample._replace(value=value)

    def _ask_workers(self, children: list[tuple[socket.socket, _Child]]) -> list[str]:
        """Each worker's answer (the caller holds the scrape lock)."""
        # One deadline for all: the workers answer in parallel, so a scrape
        # waits about ANSWER_TIMEOUT_SECONDS however many of them hang.
        deadline = time.monotonic() + ANSWER_TIMEOUT_SECONDS
        asked = []
        for channel, child in children:
            try:
                # Blocks only if a hung worker let its buffer fill; 0 is non-blocking.
                channel.settimeout(max(deadline - time.monotonic(), 0.0))
                channel.send(_REQUEST)  # one byte: sent whole or not at all
            except OSError as exc:
                self._skipped(exc)
                continue
            child.owed += 1
            asked.append((channel, child))
        for channel, child in asked:
            try:
                child.last = _read_answer(channel, child, deadline).decode()
            except OSError as exc:
                self._skipped(exc)
        # A worker that did not answer counts as it last did.
        return [child.last for _, child in children if child.last is not None]

    def _skipped(self, exc: OSError) -> None:
        self.scrape_failures.inc()
        log.warning("metrics: a worker did not answer the scrape (%s: %s)", type(exc).__name__, exc)


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def render(families: list[Metric]) -> str:
    """The text exposition of ``families``, as the endpoint serves them."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    text: bytes = generate_latest(registry)
    return text.decode()


def _read_answer(channel: socket.socket, child: _Child, deadline: float) -> bytes:
    """The answer to the latest request; earlier ones, late, are discarded."""
    while True:
        frame = child.take_frame()
        if frame is not None:
            if child.owed == 0:
                return frame
            continue
        # Past the deadline (spent waiting on other workers), still take what has arrived.
        channel.settimeout(max(deadline - time.monotonic(), 0.0))
        try:
            data = channel.recv(1 << 16)
        except BlockingIOError:
            raise TimeoutError("no answer in time") from None
        if not data:
            raise ConnectionResetError("worker gone")
        child.buffer += data
