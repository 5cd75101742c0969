"""Prometheus metrics of one application, in a registry of its own.

Other modules (send, webhooks) register their collectors on
``app[METRICS].registry``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

RATE_LIMIT_KINDS = ("auth_failures", "key")
RELAY_OUTCOMES = ("relayed", "deferred", "failed", "found_queued", "unreachable", "lost")
PUT_OFF_REASONS = ("open_receipt", "log_behind")
DELIVERY_STATUSES = ("delivered", "deferred", "bounced", "expired", "discarded", "deleted",
                     "held", "released")
JOB_OUTCOMES = ("done", "postponed", "failed")  # by job: .periodic exposes them
WEBHOOK_OUTCOMES = ("delivered", "failed", "dead")
# prometheus_client's, and on to a minute: an audit search cut at its 30 s timeout is
# told apart from a slow one, and histogram_quantile does not call half a minute 10 s.
REQUEST_BUCKETS = (*Histogram.DEFAULT_BUCKETS[:-1], 20.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "postwarden_api_requests", "HTTP requests answered",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "postwarden_api_request_seconds", "time to answer a request",
            ["route"], buckets=REQUEST_BUCKETS, registry=self.registry,
        )
        self.auth_failures = Counter(
            "postwarden_api_auth_failures", "requests refused as unauthenticated",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "postwarden_api_rate_limited", "requests refused by a rate limit",
            ["kind"], registry=self.registry,
        )
        self.relay_outcomes = Counter(
            "postwarden_relay_outcomes", "send API relay attempts by outcome: relayed, "
            "deferred, failed, found_queued (an interrupted attempt Postfix's log "
            "showed queued), unreachable (Postfix could not be reached; no attempt "
            "counted), or lost (Postfix answered for a message no longer stored: a "
            "PostgreSQL crash lost its commit)", ["outcome"], registry=self.registry,
        )
        self.relay_put_off = Counter(
            "postwarden_relay_put_off", "send API outbox rows of an interrupted attempt put "
            "off, unsent and no attempt counted, because Postfix's log cannot tell yet "
            "whether Postfix queued it, by reason: open_receipt (cleanup took it in, qmgr "
            "has not logged it yet) or log_behind (the log follower has not read to the "
            "end of the log)", ["reason"], registry=self.registry,
        )
        self.deliveries = Counter(
            "postwarden_deliveries", "send API messages' results read from Postfix's log: "
            "delivered, deferred, bounced (a recipient), expired, discarded, deleted, held, "
            "released (a message)",
            ["status"], registry=self.registry,
        )
        self.maillog_unknown_status = Counter(
            "postwarden_maillog_unknown_status_lines", "delivery lines in Postfix's log (of "
            "any mail) whose status= the follower does not know: no result for their "
            "recipient, who keeps the status it had", registry=self.registry,
        )
        self.maillog_refused_lines = Counter(
            "postwarden_maillog_refused_lines", "delivery lines about sent messages that "
            "the database refused (a value it cannot store, such as a NUL from a torn "
            "write): left out, each logged as an error", registry=self.registry,
        )
        self.maillog_reading = Gauge(
            "postwarden_maillog_reading", "1 while this instance reads Postfix's log (holds "
            "its lease), 0 while another instance on the host does", registry=self.registry,
        )
        self.maillog_unread = Gauge(
            "postwarden_maillog_unread_bytes", "bytes of Postfix's log this instance has yet "
            "to read or to store (read while PostgreSQL failed), after its last poll (0 "
            "when it does not read the log)",
            registry=self.registry,
        )
        self.job_rounds = Counter(
            "postwarden_job_rounds", "rounds of the service's periodic jobs (retention, "
            "send-housekeeping, webhook-pruning) by outcome: done (retention's too when "
            "another instance held it), postponed (a lock held elsewhere: tried again "
            "sooner), failed (the database away, or a bug: logged)", ["job", "outcome"],
            registry=self.registry,
        )
        self.job_last_done = Gauge(
            "postwarden_job_last_done_timestamp_seconds", "when each periodic job last "
            "finished a round, or when it started before its first (Unix time)", ["job"],
            registry=self.registry,
        )
        # Not by endpoint: its name is changed, and endpoints made and deleted, through
        # the API (a series per name ever used, left behind); the log names it.
        self.webhook_attempts = Counter(
            "postwarden_webhook_attempts", "webhook delivery attempts recorded, by outcome: "
            "delivered, failed (to be retried), dead (given up: out of attempts, never "
            "sendable, or answered 410 Gone); not one whose endpoint was deleted meanwhile",
            ["outcome"], registry=self.registry,
        )
        self.webhook_endpoints_disabled = Counter(
            "postwarden_webhook_endpoints_disabled", "webhook endpoints disabled because "
            "their receiver answered 410 Gone", registry=self.registry,
        )
        self.webhook_pending = Gauge(
            "postwarden_webhook_pending", "webhook deliveries waiting to be sent (retries, "
            "and those of disabled endpoints, too), counted in the database at each scrape: "
            "the same from every instance; NaN when the database did not answer",
            registry=self.registry,
        )
        self.gc_pauses = Histogram(
            "postwarden_gc_pause_seconds", "Pauses of Python's garbage collector, by "
            "generation (2: a full collection); no request is answered meanwhile",
            ["generation"], buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
            registry=self.registry,
        )
        # The label values known in advance, exposed at 0 from the start: a series that
        # appears with its first event at 1 shows no increase to rate() or increase(),
        # and an alert missed the first lost message (after a restart, often the only).
        for counter, values in ((self.rate_limited, RATE_LIMIT_KINDS),
                                (self.relay_outcomes, RELAY_OUTCOMES),
                                (self.relay_put_off, PUT_OFF_REASONS),
                                (self.deliveries, DELIVERY_STATUSES),
                                (self.webhook_attempts, WEBHOOK_OUTCOMES)):
            for value in values:
                counter.labels(value)

        # Run before each scrape: figures read from the database (webhooks' backlog).
        self.refreshers: list[Callable[[], Awaitable[None]]] = []

    async def refresh(self) -> None:
        for refresher in self.refreshers:
            await refresher()

    def exposition(self) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response


METRICS = web.AppKey("metrics", Metrics)
