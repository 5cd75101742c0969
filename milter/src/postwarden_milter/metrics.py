"""Prometheus metrics of the milter, served on a loopback port.

Each :class:`Metrics` owns its registry, so tests build one per case and
read values back with ``registry.get_sample_value``. With several worker
processes each has its own, and the parent serves their sum (.metrics_merge).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from postwarden_policies import Action

# Up to Postfix's milter_content_timeout (300 s), through the default
# message_timeout_seconds (60 s): a message cut at the deadline is told apart from a slow
# one, and histogram_quantile does not call a minute 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

# The label values known in advance, exposed at 0 from the start: a series that appears
# with its first event at 1 shows no increase to rate() or increase(), and an alert
# missed the first evaluation error or dropped event (after a restart, often the only).
VERDICTS = (*(action.value for action in Action), "aborted", "error")
ERROR_KINDS = (
    "connect", "helo", "envfrom", "envrcpt", "data", "header", "body", "eom",  # callbacks
    "negotiate", "timeout", "overload", "evaluation", "spool_full", "audit_db",
    "audit_db_refused", "audit_journal", "audit_spool", "audit_writer", "policy_event",
    "policy_watcher",
)
DROP_REASONS = ("queue_full", "error", "unstorable", "timeout", "expired", "unreadable",
                "spool_full", "spool_error")
RELOAD_RESULTS = ("initial", "ok", "failed")


def _from_zero(counter: Counter, values: tuple[str, ...]) -> Counter:
    for value in values:
        counter.labels(value)
    return counter


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages = _from_zero(Counter(
            "postwarden_messages", "Transactions by outcome", ["verdict"], registry=r
        ), VERDICTS)
        self.rules = Counter("postwarden_rule_matches", "Rules matched", ["rule"], registry=r)
        self.latency = Histogram(
            "postwarden_processing_seconds",
            "End-of-message processing time (parse, evaluate, apply)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.audit_queue_depth = Gauge(
            "postwarden_audit_queue_depth", "Audit events waiting for the writer", registry=r
        )
        self.audit_written = Counter(
            "postwarden_audit_written", "Audit events written to Postgres (once: one "
            "replayed again after a crash or a stop mid-replay is not counted again)",
            registry=r
        )
        self.audit_spooled = Counter(
            "postwarden_audit_spooled", "Audit events appended to the local spool", registry=r
        )
        self.audit_dropped = _from_zero(Counter(
            "postwarden_audit_dropped",
            "Audit events lost (queue or spool full, refused by Postgres, too slow to write, "
            "older than the audit retention, unreadable in the spool or journal)",
            ["reason"],
            registry=r,
        ), DROP_REASONS)
        self.spool_bytes = Gauge(
            "postwarden_audit_spool_bytes", "Size of the local audit spool", registry=r
        )
        self.spool_pending_bytes = Gauge(
            "postwarden_audit_spool_pending_bytes", "Bytes of the audit spool not yet "
            "replayed into Postgres (after a restart, what the last replay did not get to); 0 "
            "without a database", registry=r,
        )
        self.notify_unknown = Counter(
            "postwarden_notify_endpoint_missing", "Audit events written whose policy's "
            "notify names a webhook endpoint that does not exist: nothing is sent to it",
            ["endpoint"], registry=r,
        )
        self.audit_replayed = Counter(
            "postwarden_audit_replayed", "Audit events a replay took out of the spool "
            "(written, found stored already, or dropped and counted as such)", registry=r,
        )
        self.policy_reloads = _from_zero(Counter(
            "postwarden_policy_reloads", "Policy set loads by result, counted by each worker "
            "process: with several, one SIGHUP or edit adds one per worker (each loads the "
            "set), and each worker's start counts an initial", ["result"], registry=r
        ), RELOAD_RESULTS)
        self.policy_reload_failing = Gauge(
            "postwarden_policy_reload_failing", "1 while the last reload was refused: the "
            "policy set running is not the one in the files or the database (with several "
            "worker processes, how many of them)", registry=r,
        )
        self.policy_set = Gauge(
            "postwarden_policy_set", "The policy set running, by its hash (the first 12 "
            "characters audit rows and the admin API show): 1 (with several worker "
            "processes, how many run it)", ["hash"], registry=r,
        )
        self.bodies_spilled = Counter(
            "postwarden_bodies_spilled",
            "Message bodies past body_memory_threshold, spooled to a temporary file",
            registry=r,
        )
        self.errors = _from_zero(
            Counter("postwarden_errors", "Internal errors", ["kind"], registry=r), ERROR_KINDS)
        self.connections = Gauge(
            "postwarden_connections", "SMTP connections being filtered", registry=r
        )

    def serve(self, address: tuple[str, int]) -> Callable[[], None]:
        """Start the HTTP endpoint; returns a function that stops it."""
        return serve_registry(self.registry, address)[1]


def serve_registry(registry: CollectorRegistry, address: tuple[str, int]
                   ) -> tuple[Any, Callable[[], None]]:
    """An HTTP endpoint for ``registry`` on ``address``: its server, and a function
    that stops it."""
    result: Any = start_http_server(address[1], addr=address[0], registry=registry)
    server, thread = result

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return server, stop
