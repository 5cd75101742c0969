"""The audit spool file and the metrics endpoint (the duplicate detector: test_duplicates.py)."""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.utils import floatToGoString

from postwarden_milter import spool as spool_module
from postwarden_milter.metrics import LATENCY_BUCKETS, Metrics
from postwarden_milter.settings import MilterSettings
from postwarden_milter.spool import AuditSpool, SpoolBudget, spool_name
from postwarden_policies import AuditEvent
from tests.fixtures.forked import in_child
from tests.fixtures.ports import free_port


def _event(n: int) -> AuditEvent:
    return AuditEvent(
        event_id=uuid.uuid4().hex, time=dt.datetime.now(dt.UTC), instance="mx", queue_id=None,
        message_uid=str(n), client_address=None, client_name=None, helo=None, auth_user=None,
        sender="a@example.org", recipients=("b@example.net",), header_from=None,
        message_id=None, subject=None, size=n, action="accept", smtp_reply=None, rules=(),
        changes=(), policy_hash="h", duration_ms=1.0,
    )


def test_spool_appends_and_replays_in_order(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path, SpoolBudget(10**6))
    first, second = [_event(i) for i in range(3)], [_event(i) for i in range(3, 8)]
    spool.append(first)
    spool.append(second)
    assert spool and spool.size == spool.path.stat().st_size
    batches = list(spool.batches(size=4))
    assert [len(b) for b, _ in batches] == [4, 4]
    assert [e for b, _ in batches for e in b] == first + second
    # Resuming from a batch's end offset yields only what follows it.
    resumed = list(spool.batches(size=100, start=batches[0][1]))
    assert [e for b, _ in resumed for e in b] == (first + second)[4:]
    spool.clear()
    assert not spool and spool.path.stat().st_size == 0


def test_spool_skips_a_torn_last_line(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path, SpoolBudget(10**6))
    spool.append([_event(1)])
    with spool.path.open("a") as handle:
        handle.write('{"event_id": "torn')
    events = [e for batch, _ in spool.batches(10) for e in batch]
    assert [e.message_uid for e in events] == ["1"]


def test_a_line_torn_by_a_crash_is_cut_on_open_and_swallows_nothing(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path, SpoolBudget(10**6))
    spool.append([_event(1)])
    with spool.path.open("a") as handle:  # the crash, mid-append: half a line
        handle.write(_event(2).to_json()[:40])
    reopened = AuditSpool(tmp_path, SpoolBudget(10**6))  # the restart
    assert reopened.size == len(_event(1).to_json()) + 1
    reopened.append([_event(3)])  # acknowledged as spooled: it must be replayed
    assert [e.message_uid for batch, _ in reopened.batches(10) for e in batch] == ["1", "3"]


def test_a_torn_line_longer_than_a_read_is_cut_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "TAIL_CHUNK", 7)
    (tmp_path / spool_name(0)).write_bytes(b'{"a": 1}\n' + b"x" * 30)
    assert AuditSpool(tmp_path, SpoolBudget(10**6)).path.read_bytes() == b'{"a": 1}\n'
    (tmp_path / spool_name(0)).write_bytes(b"x" * 30)  # no line whole at all
    assert AuditSpool(tmp_path, SpoolBudget(10**6)).size == 0


def test_a_failed_append_leaves_no_part_for_the_next_to_be_glued_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = AuditSpool(tmp_path, SpoolBudget(10**6))
    spool.append([_event(1)])
    write = os.write

    def disk_full(fd: int, data: bytes | memoryview) -> int:
        write(fd, bytes(data[:10]))  # part of the batch went to disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError, match="No space"):
        spool.append([_event(2)])
    monkeypatch.undo()
    spool.append([_event(3)])
    assert [e.message_uid for batch, _ in spool.batches(10) for e in batch] == ["1", "3"]
    assert spool.budget.used == spool.size


def test_the_size_is_the_files_so_a_rotated_log_starts_again(tmp_path: Path) -> None:
    budget = SpoolBudget(10**6)
    spool = AuditSpool(tmp_path, budget)
    spool.append([_event(1), _event(2)])
    spool.path.rename(tmp_path / "audit-2024-01.jsonl")  # the admin rotates the log
    assert spool.size == 0 and not spool
    spool.append([_event(3)])
    assert spool.size == budget.used == spool.path.stat().st_size
    assert [e.message_uid for batch, _ in spool.batches(10) for e in batch] == ["3"]


def test_spool_size_survives_restart_and_reports_full(tmp_path: Path) -> None:
    AuditSpool(tmp_path, SpoolBudget(10**6)).append([_event(1)])
    reopened = AuditSpool(tmp_path, SpoolBudget(50))
    assert reopened.size > 50 and reopened.full


def test_the_spools_of_all_workers_count_against_one_budget(tmp_path: Path) -> None:
    """A first worker whose spool outgrew an equal share (``processes`` raised after an
    outage) keeps accepting while the milter's spools together stay under the cap."""
    (tmp_path / spool_name(0)).write_bytes(b"x" * 600 + b"\n")  # from before the raise
    budget = SpoolBudget(1000, slots=2)
    first, second = AuditSpool(tmp_path, budget, 0), AuditSpool(tmp_path, budget, 1)
    assert not first.full and not second.full
    second.append([_event(1), _event(2)])  # about 800 bytes: 1400 together
    assert second.size > 400 and first.full and second.full
    first.clear()
    assert budget.used == second.size and not first.full and not second.full


def test_a_forked_worker_spooling_fills_the_budget_the_others_see(tmp_path: Path) -> None:
    budget = SpoolBudget(500, slots=2)
    first = AuditSpool(tmp_path, budget, 0)

    def spool_in_worker() -> int:
        AuditSpool(tmp_path, budget, 1).append([_event(n) for n in range(3)])
        return 0

    assert in_child(spool_in_worker) == 0
    assert first.full and budget.used == (tmp_path / spool_name(1)).stat().st_size


def test_metrics_served_on_loopback() -> None:
    metrics = Metrics()
    metrics.messages.labels("reject").inc()
    metrics.policy_reloads.labels("failed").inc()
    port = free_port()
    stop = metrics.serve(("127.0.0.1", port))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        stop()
    assert 'postwarden_messages_total{verdict="reject"} 1.0' in text
    assert 'postwarden_policy_reloads_total{result="failed"} 1.0' in text
    assert "postwarden_processing_seconds_bucket" in text
    assert "postwarden_audit_queue_depth" in text


def test_latency_buckets_tell_slow_messages_from_those_cut_at_the_deadline() -> None:
    # The buckets stopped at 10 s, a sixth of the default deadline: a message answered
    # in 15 s, one in 50 s and one cut at the deadline all fell in +Inf, and
    # histogram_quantile called each 10 s.
    metrics = Metrics()
    deadline = MilterSettings().message_timeout_seconds
    for seconds in (15.0, 50.0, deadline + 0.01):  # the last: MessageTimeout, a tempfail
        metrics.latency.observe(seconds)

    def within(bound: float) -> float | None:
        return metrics.registry.get_sample_value(
            "postwarden_processing_seconds_bucket", {"le": floatToGoString(bound)})

    assert within(LATENCY_BUCKETS[-1]) == 3  # up to Postfix's own milter_content_timeout
    assert within(deadline) == 2  # past the deadline, only messages cut there
    assert 1 in {within(bound) for bound in LATENCY_BUCKETS}


MILTER_SOURCES = Path(__file__).parents[2] / "milter" / "src" / "postwarden_milter"
# Where the milter names a label value: metric.labels("value"), a callback's guard.
_NAMED = re.compile(r'\.(errors|audit_dropped|policy_reloads)\.labels\("(\w+)"\)|'
                    r'(?:@guarded|count_error)\("(\w+)"')


def test_every_label_value_the_milter_counts_is_exposed_at_0_from_the_start() -> None:
    """A series that appears with its first event at 1 shows no increase to rate() or
    increase(): an alert on an evaluation error, a dropped audit event or a refused
    reload missed the first, which after a restart is often the only one."""
    named: dict[str, set[str]] = {"errors": set(), "audit_dropped": set(),
                                  "policy_reloads": set()}
    for source in MILTER_SOURCES.glob("*.py"):
        for match in _NAMED.finditer(source.read_text(encoding="utf-8")):
            metric, value, callback = match.groups()
            named["errors" if callback else metric].add(value or callback)
    assert {"eom", "evaluation", "audit_db"} <= named["errors"]  # the sources were read
    metrics = Metrics()
    families = {"errors": ("postwarden_errors_total", "kind"),
                "audit_dropped": ("postwarden_audit_dropped_total", "reason"),
                "policy_reloads": ("postwarden_policy_reloads_total", "result")}
    for metric, values in named.items():
        name, label = families[metric]
        for value in sorted(values):
            assert metrics.registry.get_sample_value(name, {label: value}) == 0, (name, value)
    for verdict in ("accept", "reject", "tempfail", "discard", "quarantine", "aborted", "error"):
        assert metrics.registry.get_sample_value(
            "postwarden_messages_total", {"verdict": verdict}) == 0, verdict
