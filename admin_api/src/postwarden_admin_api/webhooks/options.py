"""How webhooks behave in this process: limits from the settings, plus test seams."""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass, field

from aiohttp import web

from postwarden_admin_api.settings import ServiceSettings

from .connector import Lookup, system_lookup
from .ssrf import Guard


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    max_attempts: int = 8
    timeout_seconds: float = 10.0
    guard: Guard = field(default_factory=Guard)
    backoff_base_seconds: float = 10.0  # first retry after 5 to 10 s, then doubling
    backoff_cap_seconds: float = 3600.0
    poll_interval_seconds: float = 1.0
    batch_size: int = 10  # deliveries in flight at once (see endpoint_in_flight)
    # Delivered and dead deliveries (and then their events) older than this are pruned.
    history_retention: dt.timedelta = dt.timedelta(days=30)
    prune_interval_seconds: float = 3600.0
    # A receiver's CA for tests; None verifies against the system's trust store.
    ssl_context: ssl.SSLContext | None = None
    lookup: Lookup = system_lookup

    @property
    def endpoint_in_flight(self) -> int:
        """At most this many deliveries of one endpoint in flight, in this process:
        ``batch_size`` // 4, at least one (2 of the default 10). Fewer than five hanging
        receivers (with the defaults) leave slots for the other endpoints, while a
        healthy endpoint's backlog still goes out more than one at a time."""
        return max(1, self.batch_size // 4)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> WebhookOptions:
        return cls(
            max_attempts=settings.webhook_max_attempts,
            timeout_seconds=settings.webhook_timeout_seconds,
            guard=Guard.from_cidrs(settings.webhook_allowed_networks),
            history_retention=dt.timedelta(days=settings.webhook_history_days),
            prune_interval_seconds=settings.webhook_prune_interval_seconds,
        )


# Set by setup_webhooks from the settings; a test may replace it before startup.
WEBHOOK_OPTIONS = web.AppKey("webhook_options", WebhookOptions)
