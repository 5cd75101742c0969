"""The README's list of the admin service's metrics is what ``/metrics`` exposes: every
metric it names is there, and every metric there is named (the names are read
from the README, so a rename on either side fails here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from postwarden_admin_api.audit_queries import STATEMENT_TIMEOUT_MS
from postwarden_admin_api.metrics import Metrics

README = Path(__file__).parents[2] / "README.md"


def documented_names() -> set[str]:
    """The metric names in the README's Metrics item, up to where the milter's start."""
    text = README.read_text(encoding="utf-8")
    start = text.index("The admin service serves `/metrics`")
    end = text.index("the milter on `metrics_listen`", start)
    return set(re.findall(r"`(postwarden_\w+)`", text[start:end]))


def exposed_names(exposition: str) -> dict[str, set[str]]:
    """Each family's name -> the names a document may call it by: the family's, its
    samples', and a counter's ``_total`` (exposed only once it is counted, for labels)."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        aliases = {family.name, *(sample.name for sample in family.samples)}
        if family.type == "counter":
            aliases.add(f"{family.name}_total")
        names[family.name] = aliases
    return names


async def test_every_documented_admin_metric_is_exposed_and_no_other(
    admin_client: TestClient[Any, Any],
) -> None:
    assert (await admin_client.get("/healthz")).status == 200  # something counted
    response = await admin_client.get("/metrics")
    assert response.status == 200
    exposed = exposed_names(await response.text())
    documented = documented_names()
    assert len(documented) >= 8  # the README's list was found at all
    known = set().union(*exposed.values())
    assert sorted(documented - known) == []
    # prometheus_client adds an ``X_created`` family for each counter or histogram X.
    companions = {f"{family}_created" for family in exposed}
    assert sorted(family for family, aliases in exposed.items()
                  if not aliases & documented and family not in companions) == []


@pytest.mark.parametrize(("name", "label", "values"), [
    ("postwarden_api_rate_limited_total", "kind", ("auth_failures", "key")),
    ("postwarden_relay_outcomes_total", "outcome",
     ("relayed", "deferred", "failed", "found_queued", "unreachable", "lost")),
    ("postwarden_relay_put_off_total", "reason", ("open_receipt", "log_behind")),
    ("postwarden_deliveries_total", "status",
     ("delivered", "deferred", "bounced", "expired", "discarded", "deleted", "held",
      "released")),
    ("postwarden_webhook_attempts_total", "outcome", ("delivered", "failed", "dead")),
])
def test_every_label_value_the_readme_names_is_exposed_at_0_from_the_start(
    name: str, label: str, values: tuple[str, ...],
) -> None:
    """A series that appears with its first event at 1 shows no increase to rate() or
    increase(): an alert on a lost message or a blocked client missed the first."""
    metrics = Metrics()
    assert [metrics.registry.get_sample_value(name, {label: value}) for value in values] \
        == [0.0] * len(values)


def test_request_latency_tells_a_slow_audit_search_from_one_cut_at_its_timeout() -> None:
    # The buckets stopped at 10 s, a third of the audit queries' 30 s: a search answered
    # in 15 s and one cut at the timeout both fell in +Inf (histogram_quantile: 10 s).
    metrics = Metrics()
    timeout = STATEMENT_TIMEOUT_MS / 1000
    for seconds in (15.0, timeout + 0.01):
        metrics.latency.labels("/api/v1/audit").observe(seconds)
    within = {float(sample.labels["le"]): sample.value
              for family in metrics.registry.collect() for sample in family.samples
              if sample.name == "postwarden_api_request_seconds_bucket"}
    assert within[timeout] == 1  # the timeout is a bound: past it, only those cut there
    assert max(bound for bound in within if bound != float("inf")) > timeout
