"""The parent's metrics endpoint merges its workers' (postwarden_milter.metrics_merge).

The end-to-end tests fork real children that count in their own ``Metrics``
and answer over socket pairs, as the supervisor's workers do.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from postwarden_milter.metrics import Metrics
from postwarden_milter.metrics_merge import (
    ANSWER_TIMEOUT_SECONDS,
    MergedMetrics,
    Series,
    answer_scrapes,
    merge_expositions,
    render,
)
from tests.fixtures import forked
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import wait_until
from tests.fixtures.scrape import sample_values, scrape

CHILD_LIFETIME = 20.0  # a child left waiting this long exits anyway
ACCEPT: Series = ("postwarden_messages_total", frozenset({("verdict", "accept")}))
LATENCY_COUNT: Series = ("postwarden_processing_seconds_count", frozenset())
FAILURES: Series = ("postwarden_worker_scrape_failures_total", frozenset())


def _child_text(accepts: int, rejects: int, latencies: list[float], connections: int) -> str:
    metrics = Metrics()
    if accepts:
        metrics.messages.labels("accept").inc(accepts)
    if rejects:
        metrics.messages.labels("reject").inc(rejects)
    for seconds in latencies:
        metrics.latency.observe(seconds)
    metrics.connections.set(connections)
    text: bytes = generate_latest(metrics.registry)
    return text.decode()


def test_merge_sums_each_series_and_keeps_labels_help_and_type() -> None:
    first = _child_text(accepts=3, rejects=1, latencies=[0.002, 0.3], connections=2)
    second = _child_text(accepts=4, rejects=0, latencies=[0.002], connections=5)

    merged = merge_expositions([first, second])

    values = sample_values(merged)
    assert values[ACCEPT] == 7
    assert values["postwarden_messages_total", frozenset({("verdict", "reject")})] == 1
    assert values[LATENCY_COUNT] == 3
    assert values["postwarden_processing_seconds_sum", frozenset()] == pytest.approx(0.304)
    assert values["postwarden_processing_seconds_bucket", frozenset({("le", "0.0025")})] == 2
    assert values["postwarden_processing_seconds_bucket", frozenset({("le", "0.25")})] == 2
    assert values["postwarden_processing_seconds_bucket", frozenset({("le", "+Inf")})] == 3
    assert values["postwarden_connections", frozenset()] == 7
    by_name = {family.name: family for family in merged}
    assert by_name["postwarden_messages"].type == "counter"
    assert by_name["postwarden_messages"].documentation == "Transactions by outcome"
    assert by_name["postwarden_processing_seconds"].type == "histogram"
    assert by_name["postwarden_connections"].type == "gauge"
    assert by_name["postwarden_rule_matches"].samples == []  # no series yet: HELP/TYPE stay


def test_a_worker_gone_carries_its_counters_and_histograms_not_its_gauges() -> None:
    live = _child_text(accepts=2, rejects=0, latencies=[0.1], connections=3)
    gone = _child_text(accepts=5, rejects=1, latencies=[0.2, 0.3], connections=4)
    values = sample_values(merge_expositions([live], carried=[gone, gone]))
    assert values[ACCEPT] == 2 + 5 + 5
    assert values["postwarden_messages_total", frozenset({("verdict", "reject")})] == 2
    assert values[LATENCY_COUNT] == 1 + 2 + 2
    assert values["postwarden_connections", frozenset()] == 3  # only the live worker's


def test_merge_drops_created_series() -> None:
    text = _child_text(accepts=1, rejects=0, latencies=[0.1], connections=0)
    assert "postwarden_messages_created" in text  # what each worker exposes

    merged = merge_expositions([text, text])

    assert not [name for name, _ in sample_values(merged) if name.endswith("_created")]
    assert "postwarden_messages_created" not in {family.name for family in merged}


def test_merged_exposition_is_the_single_process_one_without_created() -> None:
    """Dashboards need no change: one worker's merge renders as that worker's exposition."""
    text = _child_text(accepts=2, rejects=1, latencies=[0.01], connections=1)
    rendered = render(merge_expositions([text]))

    single = [line for line in text.splitlines() if "_created" not in line]
    assert rendered.splitlines() == single
    assert 'postwarden_messages_total{verdict="accept"} 2.0' in single


@dataclass
class Child:
    pid: int
    channel: socket.socket  # the parent's end
    control: int  # write end of the child's control pipe: closing it lets the child exit


def _wait_readable(fd: int, seconds: float) -> bytes:
    """One read from ``fd`` (b"" at EOF), or b"" after ``seconds``."""
    ready, _, _ = select.select([fd], [], [], seconds)
    return os.read(fd, 64) if ready else b""


def _wait_for_eof(fd: int) -> None:
    deadline = time.monotonic() + CHILD_LIFETIME
    while (left := deadline - time.monotonic()) > 0 and _wait_readable(fd, left):
        pass


class Children:
    def __init__(self) -> None:
        self.alive: list[Child] = []

    def fork(self, body: Callable[[socket.socket, int], None]) -> Child:
        """A child running ``body(its channel end, its control pipe's read end)``."""
        ours, theirs = socket.socketpair()
        read_end, write_end = os.pipe()
        others = list(self.alive)

        def run() -> int:
            ours.close()
            os.close(write_end)
            for other in others:  # else they would hold its EOF back
                other.channel.close()
                os.close(other.control)
            body(theirs, read_end)
            return 0

        pid = forked.fork(run)
        theirs.close()
        os.close(read_end)
        child = Child(pid, ours, write_end)
        self.alive.append(child)
        return child

    def end(self, child: Child) -> int:
        """Let the child exit and reap it; its exit code."""
        self.alive.remove(child)
        os.close(child.control)
        child.channel.close()
        return forked.reap(child.pid, seconds=10)


@pytest.fixture
def children() -> Iterator[Children]:
    made = Children()
    try:
        yield made
    finally:
        for child in list(made.alive):
            made.end(child)


def _worker(accepts: int, latencies: int) -> Callable[[socket.socket, int], None]:
    """A worker's metrics, answered until the parent closes the control pipe."""

    def body(channel: socket.socket, control: int) -> None:
        metrics = Metrics()
        for _ in range(accepts):
            metrics.messages.labels("accept").inc()
        for _ in range(latencies):
            metrics.latency.observe(0.004)
        stop = answer_scrapes(metrics.registry, channel)
        _wait_for_eof(control)
        stop()

    return body


def _silent(channel: socket.socket, control: int) -> None:
    """A hung worker: holds its channel open and never answers."""
    _wait_for_eof(control)
    channel.close()


@pytest.fixture
def endpoint() -> Iterator[tuple[MergedMetrics, int]]:
    merged = MergedMetrics()
    port = free_port()
    stop = merged.serve(("127.0.0.1", port))
    try:
        yield merged, port
    finally:
        stop()


def test_endpoint_serves_the_sum_of_the_workers_present(
    children: Children, endpoint: tuple[MergedMetrics, int]
) -> None:
    merged, port = endpoint
    first = children.fork(_worker(accepts=3, latencies=2))
    second = children.fork(_worker(accepts=4, latencies=5))
    merged.add(first.channel)
    merged.add(second.channel)
    merged.worker_restarts.inc()

    values = scrape(port)
    assert values[ACCEPT] == 7
    assert values[LATENCY_COUNT] == 7
    assert values["postwarden_processing_seconds_sum", frozenset()] == pytest.approx(0.028)
    assert values["postwarden_worker_restarts_total", frozenset()] == 1
    assert values[FAILURES] == 0
    assert scrape(port)[ACCEPT] == 7  # the channels stay in step scrape after scrape

    # A worker gone (replaced) keeps counting with its last answer: no drop that
    # Prometheus would read as a reset and a spike.
    merged.remove(first.channel)
    assert children.end(first) == 0
    values = scrape(port)
    assert values[ACCEPT] == 7
    assert values[LATENCY_COUNT] == 7
    assert values[FAILURES] == 0
    replacement = children.fork(_worker(accepts=5, latencies=1))
    merged.add(replacement.channel)
    assert scrape(port)[ACCEPT] == 3 + 4 + 5
    assert children.end(second) == 0
    assert children.end(replacement) == 0


def test_a_worker_that_does_not_answer_is_skipped_and_counted(
    children: Children, endpoint: tuple[MergedMetrics, int]
) -> None:
    merged, port = endpoint
    hung = children.fork(_silent)
    answering = children.fork(_worker(accepts=4, latencies=1))
    merged.add(hung.channel)
    merged.add(answering.channel)

    started = time.monotonic()
    values = scrape(port)
    took = time.monotonic() - started
    assert values[ACCEPT] == 4
    assert values[FAILURES] == 1
    assert ANSWER_TIMEOUT_SECONDS <= took < ANSWER_TIMEOUT_SECONDS + 2

    assert scrape(port)[FAILURES] == 2  # skipped again, each scrape bounded
    assert children.end(hung) == 0
    assert children.end(answering) == 0


def _answers(*accepts: int) -> Callable[[socket.socket, int], None]:
    """A worker that answers one scrape with each count in turn, then never again."""

    def body(channel: socket.socket, control: int) -> None:
        for count in accepts:
            assert channel.recv(1)
            text = ("# TYPE postwarden_messages_total counter\n"
                    f'postwarden_messages_total{{verdict="accept"}} {count}.0\n').encode()
            channel.sendall(len(text).to_bytes(4, "big") + text)
        _wait_for_eof(control)

    return body


def test_a_silent_worker_counts_as_it_last_answered(
    children: Children, endpoint: tuple[MergedMetrics, int]
) -> None:
    merged, port = endpoint
    child = children.fork(_answers(6))
    merged.add(child.channel)
    assert scrape(port)[ACCEPT] == 6
    values = scrape(port)  # no answer now: skipped, counted, and its 6 still shown
    assert values[ACCEPT] == 6
    assert values[FAILURES] == 1
    assert children.end(child) == 0


def test_a_summed_counter_never_goes_down(
    children: Children, endpoint: tuple[MergedMetrics, int]
) -> None:
    """What a worker counted after its last answer is lost when it dies: the sum holds
    its highest value until the others make it up, instead of dropping."""
    merged, port = endpoint
    child = children.fork(_answers(9, 4, 12))
    merged.add(child.channel)
    assert [scrape(port)[ACCEPT] for _ in range(3)] == [9, 9, 12]
    assert children.end(child) == 0


def test_a_worker_removed_during_a_scrape_is_counted_once(
    children: Children, endpoint: tuple[MergedMetrics, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor retires a dead worker while a scrape is asking the workers: its
    last answer is in that scrape's answers or among the retired, not in both (a double
    count would then be held as the highest value)."""
    merged, port = endpoint
    child = children.fork(_answers(5, 5))
    merged.add(child.channel)
    assert scrape(port)[ACCEPT] == 5
    ask = merged._ask_workers

    def retired_meanwhile(asked: Any) -> list[str]:
        merged.remove(child.channel)
        return ask(asked)

    monkeypatch.setattr(merged, "_ask_workers", retired_meanwhile)
    assert scrape(port)[ACCEPT] == 5
    monkeypatch.undo()
    assert scrape(port)[ACCEPT] == 5
    assert children.end(child) == 0


def test_late_answers_are_discarded_and_each_missed_request_answered(
    children: Children, endpoint: tuple[MergedMetrics, int]
) -> None:
    merged, port = endpoint

    def late(channel: socket.socket, control: int) -> None:
        assert _wait_readable(control, CHILD_LIFETIME) == b"go"
        time.sleep(0.3)  # so the next scrape's request waits too: three in the channel
        assert channel.recv(1)  # the first scrape's, answered after it gave up, with 100
        stale = b'postwarden_messages_total{verdict="accept"} 100.0\n'
        channel.sendall(len(stale).to_bytes(4, "big") + stale)
        _worker(accepts=1, latencies=0)(channel, control)  # the other two: one read

    child = children.fork(late)
    merged.add(child.channel)
    assert ACCEPT not in scrape(port)
    assert ACCEPT not in scrape(port)

    os.write(child.control, b"go")
    values = scrape(port)
    assert values[ACCEPT] == 1
    assert values[FAILURES] == 2
    assert scrape(port)[ACCEPT] == 1
    assert children.end(child) == 0


def _answer_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "postwarden-metrics-answers"}


def test_answer_thread_ends_when_stopped_or_when_the_parent_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    metrics.messages.labels("accept").inc(2)
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    others = _answer_threads()  # only this test's thread is looked for
    stop = answer_scrapes(metrics.registry, theirs)
    ours.sendall(b"?")
    frame = b""
    while len(frame) < 4 or len(frame) < 4 + int.from_bytes(frame[:4], "big"):
        frame += ours.recv(1 << 16)
    assert sample_values(text_string_to_metric_families(frame[4:].decode()))[ACCEPT] == 2

    stop()
    assert _answer_threads() <= others  # the blocked read was woken: its join waits 5 s at most
    assert theirs.fileno() == -1
    assert ours.recv(1) == b""
    ours.close()

    caplog.set_level(logging.DEBUG, logger="postwarden_milter.metrics_merge")
    ours, theirs = socket.socketpair()
    others = _answer_threads()
    stop = answer_scrapes(metrics.registry, theirs)
    ours.sendall(b"?")
    assert select.select([ours], [], [], 5)[0]
    ours.close()  # the parent gone, its answer unread: ECONNRESET in the worker's thread
    # Ended quietly: an exception in it would fail the test.
    assert wait_until(lambda: _answer_threads() <= others, timeout=5)
    assert "metrics channel failed" in caplog.text
    stop()


def test_a_worker_lets_go_of_the_endpoint_socket(children: Children) -> None:
    merged = MergedMetrics()
    port = free_port()
    stop = merged.serve(("127.0.0.1", port))

    def body(channel: socket.socket, control: int) -> None:
        merged.close_in_worker()
        channel.sendall(b"closed")
        _wait_for_eof(control)

    child = children.fork(body)
    child.channel.settimeout(10)
    assert child.channel.recv(16) == b"closed"
    stop()
    # While the worker lives, the port is free again: it kept no listening socket.
    MergedMetrics().serve(("127.0.0.1", port))()
    assert children.end(child) == 0
