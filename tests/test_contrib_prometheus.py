"""contrib/prometheus/postwarden-alerts.yml: a Prometheus rule file whose expressions
use only the metrics, labels and label values the milter and the admin service
expose (read from their registries), so no alert waits on a series that never exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from postwarden_admin_api.metrics import JOB_OUTCOMES
from postwarden_admin_api.metrics import Metrics as AdminMetrics
from postwarden_milter.metrics import Metrics as MilterMetrics
from postwarden_milter.metrics_merge import MergedMetrics

RULES = Path(__file__).resolve().parent.parent / "contrib" / "prometheus" / "postwarden-alerts.yml"
# Series not ours: Prometheus's own per target, and blackbox_exporter's probe of /readyz.
EXTERNAL = {"up", "probe_success"}
FUNCTIONS = {"absent", "increase", "rate", "deriv", "sum", "max", "min", "time",
             "histogram_quantile"}
SELECTOR = re.compile(r"\b([a-z_][a-z0-9_]*)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring"}
SEVERITIES = {"warning", "critical"}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def _exposed() -> dict[str, dict[str, set[str]]]:
    """Each name a query may use (a counter's with _total, a histogram's _bucket and so
    on) -> its label names -> the values exposed (at 0 from the start)."""
    admin = AdminMetrics()
    for outcome in JOB_OUTCOMES:  # as .periodic exposes them for each job it runs
        admin.job_rounds.labels("retention", outcome)
    registries: list[CollectorRegistry] = [MilterMetrics().registry, MergedMetrics().registry,
                                           admin.registry]
    exposed: dict[str, dict[str, set[str]]] = {}
    for registry in registries:
        for family in registry.collect():
            exposed.setdefault(family.name, {})
            for sample in family.samples:
                labels = exposed.setdefault(sample.name, {})
                for name, value in sample.labels.items():
                    labels.setdefault(name, set()).add(value)
                    exposed[family.name].setdefault(name, set()).add(value)
    return exposed


def test_every_rule_is_an_alert_with_what_an_admin_reads() -> None:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert [group["name"] for group in document["groups"]] == ["postwarden-milter",
                                                              "postwarden-admin"]
    alerts = [rule["alert"] for rule in _rules()]
    assert len(alerts) == len(set(alerts)) > 20
    for rule in _rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"Postwarden[A-Za-z]+", str(rule["alert"]))
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", "1m"))), rule
        assert rule["labels"] == {"severity": rule["labels"]["severity"]}
        assert rule["labels"]["severity"] in SEVERITIES
        assert set(rule["annotations"]) == {"summary", "description"}


def _balanced(expr: str) -> bool:
    depth = 0
    for char in expr:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _problems(expr: str, exposed: dict[str, dict[str, set[str]]]) -> list[str]:
    """What in ``expr`` names no function, metric, label or label value we expose."""
    problems = [] if _balanced(expr) else ["unbalanced parentheses"]
    text = re.sub(r"\b(?:by|without)\s*\([^)]*\)", "", expr)  # grouping labels
    text = re.sub(r"\[\w+\]", "", text)  # ranges
    for match in SELECTOR.finditer(text):
        name, matchers = match[1], match[2] or ""
        follows = text[match.end():].lstrip()[:1]
        if name in KEYWORDS:
            continue
        if follows == "(" and not matchers:
            problems += [] if name in FUNCTIONS else [f"unknown function {name}"]
            continue
        if name in EXTERNAL:
            continue
        if name not in exposed:
            problems.append(f"{name} is not exposed")
            continue
        for label, operator, value in MATCHER.findall(matchers):
            values = exposed[name].get(label)
            if values is None:
                problems.append(f"{name} has no label {label}")
            elif operator in {"=", "!="}:
                problems += [] if value in values else [f"{name}{{{label}={value!r}}}"]
            else:
                problems += [f"{name}{{{label}=~{part!r}}}" for part in value.split("|")
                             if part not in values]
    return problems


def test_every_expression_uses_only_what_the_services_expose() -> None:
    exposed = _exposed()
    problems = {rule["alert"]: _problems(str(rule["expr"]), exposed) for rule in _rules()}
    assert {alert: found for alert, found in problems.items() if found} == {}


def test_the_check_finds_a_misspelt_metric_label_or_value() -> None:
    exposed = _exposed()
    assert _problems('increase(postwarden_error_total{kind="audit_spool"}[5m]) > 0',
                     exposed) == ["postwarden_error_total is not exposed"]
    assert _problems('postwarden_errors_total{kinds="x"}', exposed) == [
        "postwarden_errors_total has no label kinds"]
    assert _problems('postwarden_errors_total{kind=~"audit_spool|audit_pool"}', exposed) == [
        "postwarden_errors_total{kind=~'audit_pool'}"]
    assert _problems("rates(postwarden_messages_total[5m]", exposed) == [
        "unbalanced parentheses", "unknown function rates"]


def test_the_readme_and_the_contrib_docs_name_the_rules() -> None:
    name = "`contrib/prometheus/postwarden-alerts.yml`"
    readme = (RULES.parents[2] / "README.md").read_text(encoding="utf-8")
    metrics = readme[readme.index("- **Metrics.**"):]
    assert name in metrics[:metrics.index("\n- **")]
    contrib = (RULES.parent / "README.md").read_text(encoding="utf-8")
    assert f"`{RULES.name}`" in contrib
    alerts = {rule["alert"] for rule in _rules()}
    named = set(re.findall(r"`(Postwarden\w+)`", contrib))
    assert named and named <= alerts  # the rules its advice is about are there
