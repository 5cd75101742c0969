"""Policy hot reload: file changes, refused bad sets (raised as policy.load_failed), NOTIFY."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest

from postwarden_milter import reload as reload_module
from postwarden_milter.load_failed import (
    MAX_ERROR_LINES,
    MAX_LINE_CHARS,
    LoadFailedNotifier,
    load_failed_payload,
)
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.reload import LAST_GOOD_NAME, PolicyReloader
from postwarden_policies import PolicyIssue, PolicyLoadError
from postwarden_policies.cli import main as policy_cli
from postwarden_store import connect
from postwarden_store.policies import notify_policy_change
from tests.fixtures.postgres import wait_until

POLICY = "version: 1\nname: {name}\nlimits:\n  max_recipients: {limit}\n"


def _reloader(metrics: Metrics, loop: LoopThread, tmp_path: Path, *,
              policy_dir: Path | None = None, database_url: str | None = None,
              announce_failures: bool = True) -> PolicyReloader:
    spool = tmp_path / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    return PolicyReloader(metrics, spool_dir=spool, policy_dir=policy_dir,
                          database_url=database_url, poll_seconds=0.05, loop_thread=loop,
                          instance_name="mx-test", announce_failures=announce_failures)


def _file_reloader(tmp_path: Path, loop: LoopThread) -> tuple[Path, Metrics, PolicyReloader]:
    """A reloader of a directory with one policy file (max_recipients 5), not yet loaded."""
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    policy = policy_dir / "main.yaml"
    policy.write_text(POLICY.format(name="main", limit=5))
    metrics = Metrics()
    return policy, metrics, _reloader(metrics, loop, tmp_path, policy_dir=policy_dir)


def _count(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("postwarden_policy_reloads_total",
                                             {"result": result}) or 0.0


def _listens(caplog: pytest.LogCaptureFixture) -> bool:
    """Whether the reloader listens: it then loads the active set again, in case a NOTIFY
    went unheard, which it logs at DEBUG when it finds the set it runs (caplog at DEBUG
    for postwarden_milter.reload)."""
    return "(notify)" in caplog.text


def _running(metrics: Metrics) -> tuple[set[str], float | None]:
    """The hashes postwarden_policy_set shows, and postwarden_policy_reload_failing."""
    hashes = {sample.labels["hash"] for family in metrics.registry.collect()
              if family.name == "postwarden_policy_set" for sample in family.samples
              if sample.value == 1}
    return hashes, metrics.registry.get_sample_value("postwarden_policy_reload_failing")


def test_file_change_reloads_and_a_bad_set_is_refused(
    tmp_path: Path, loop_thread: LoopThread
) -> None:
    policy, metrics, reloader = _file_reloader(tmp_path, loop_thread)
    holder = reloader.load_initial()
    reloader.start()
    try:
        first = holder.current
        assert first.limits.max_recipients == 5
        assert _running(metrics) == ({first.content_hash[:12]}, 0)
        policy.write_text(POLICY.format(name="main", limit=7))
        assert wait_until(lambda: holder.current.limits.max_recipients == 7, timeout=10)

        good = holder.current
        assert _running(metrics) == ({good.content_hash[:12]}, 0)
        policy.write_text("version: 1\nname: main\nrules: [oops\n")
        assert wait_until(lambda: _count(metrics, "failed") == 1, timeout=10)
        assert holder.current is good  # the running set stays
        assert _running(metrics) == ({good.content_hash[:12]}, 1)

        reloader.request()  # SIGHUP path: re-read even without a change
        assert wait_until(lambda: _count(metrics, "failed") == 2, timeout=10)
    finally:
        reloader.stop()
    assert _count(metrics, "ok") == 1


def test_a_change_loads_once_the_files_stop_changing(
    tmp_path: Path, loop_thread: LoopThread
) -> None:
    policy, metrics, reloader = _file_reloader(tmp_path, loop_thread)
    holder = reloader.load_initial()  # the watcher thread is not started: we poll by hand
    policy.write_text("version: 1\nname: main\nlimits:\n  max_rec")  # a write under way
    reloader.poll_files()
    policy.write_text(POLICY.format(name="main", limit=7))  # ... and finished
    reloader.poll_files()
    assert holder.current.limits.max_recipients == 5  # still changing at each poll: nothing loaded
    reloader.poll_files()
    assert holder.current.limits.max_recipients == 7
    reloader.poll_files()
    assert (_count(metrics, "ok"), _count(metrics, "failed")) == (1, 0)


def test_the_watcher_outlives_an_unexpected_error(
    tmp_path: Path, loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy, metrics, reloader = _file_reloader(tmp_path, loop_thread)
    holder = reloader.load_initial()
    real = reload_module._fingerprint
    failures: list[Path] = []

    def fails_once(directory: Path) -> reload_module.Fingerprint:
        if not failures:
            failures.append(directory)
            raise RuntimeError("unexpected")
        return real(directory)

    monkeypatch.setattr(reload_module, "_fingerprint", fails_once)
    assert metrics.registry.get_sample_value(  # from 0, so that increase() sees the first
        "postwarden_errors_total", {"kind": "policy_watcher"}) == 0
    reloader.start()
    try:
        assert wait_until(lambda: bool(failures), timeout=10)
        policy.write_text(POLICY.format(name="main", limit=7))
        assert wait_until(lambda: holder.current.limits.max_recipients == 7, timeout=10)
    finally:
        reloader.stop()
    assert "policy watcher: unexpected error, still watching" in caplog.text
    # Counted as well: an alert on errors sees a watcher that keeps failing.
    assert metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "policy_watcher"}) == 1


def test_removing_a_broken_link_that_refused_the_set_is_a_change(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(POLICY.format(name="a", limit=5))
    files = reload_module.PolicyFiles(tmp_path)
    files.load()
    (tmp_path / "a.yaml").write_text(POLICY.format(name="a", limit=7) + "# edited\n")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "gone.yaml")  # a link that broke
    assert [files.settled(), files.settled()] == [False, True]
    with pytest.raises(PolicyLoadError):
        files.load()  # refused: the running set stays
    (tmp_path / "b.yaml").unlink()  # the fix: the poll must see it, or never reload
    assert [files.settled(), files.settled()] == [False, True]
    assert files.load().limits.max_recipients == 7


def test_a_file_removed_while_listing_counts_as_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "main.yaml"
    policy.write_text(POLICY.format(name="main", limit=5))
    gone = tmp_path / "gone.yaml"  # listed, then removed before its stat
    monkeypatch.setattr(reload_module, "policy_files", lambda paths: ([gone, policy], []))
    assert [name for name, *_ in reload_module._fingerprint(tmp_path)] == [str(policy)]


async def _activate(dsn: str, name: str, source: str) -> None:
    conn = await connect(dsn)
    try:
        revision = await conn.fetchval(
            "INSERT INTO policy_revisions (policy_name, content_hash, source) "
            "VALUES ($1, 'x', $2) RETURNING id", name, source)
        await conn.execute(
            "INSERT INTO active_policies (policy_name, revision_id) VALUES ($1, $2) "
            "ON CONFLICT (policy_name) DO UPDATE SET revision_id = excluded.revision_id",
            name, revision)
        await notify_policy_change(conn)
    finally:
        await conn.close()


def _reload_from_the_database(metrics: Metrics, loop_thread: LoopThread, tmp_path: Path,
                              database_url: str) -> None:
    """Start on the active set (max_recipients 2), then see the next activation (9) live."""
    reloader = _reloader(metrics, loop_thread, tmp_path, database_url=database_url)
    holder = reloader.load_initial()
    reloader.start()
    try:
        assert holder.current.limits.max_recipients == 2
        asyncio.run(_activate(database_url, "main", POLICY.format(name="main", limit=9)))
        assert wait_until(lambda: holder.current.limits.max_recipients == 9, timeout=15)
    finally:
        reloader.stop()


@pytest.mark.postgres
def test_database_revisions_reload_on_notify_and_survive_an_outage(
    database_url: str, tmp_path: Path, loop_thread: LoopThread
) -> None:
    asyncio.run(_activate(database_url, "main", POLICY.format(name="main", limit=2)))
    metrics = Metrics()
    _reload_from_the_database(metrics, loop_thread, tmp_path, database_url)
    assert (tmp_path / "spool" / LAST_GOOD_NAME).exists()

    # Postgres unreachable at the next start: the last good set is used.
    unreachable = "postgresql://postgres@127.0.0.1:1/none"
    offline = _reloader(Metrics(), loop_thread, tmp_path, database_url=unreachable)
    assert offline.load_initial().current.limits.max_recipients == 9


@pytest.mark.postgres
def test_only_an_activation_counts_and_logs_a_reload_from_the_database(
    database_url: str, tmp_path: Path, loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once it listens, the reloader loads the active set again, in case an activation
    went unheard: finding the set it runs, that was "policy set reloaded (notify): X ->
    X" and one more `ok` at every start and every reconnect, as if a push had come."""
    caplog.set_level(logging.DEBUG, logger="postwarden_milter.reload")
    asyncio.run(_activate(database_url, "main", POLICY.format(name="main", limit=2)))
    metrics = Metrics()
    reloader = _reloader(metrics, loop_thread, tmp_path, database_url=database_url)
    holder = reloader.load_initial()
    reloader.start()
    try:
        assert wait_until(lambda: _listens(caplog), timeout=15)
        asyncio.run(_activate(database_url, "main", POLICY.format(name="main", limit=9)))
        assert wait_until(lambda: holder.current.limits.max_recipients == 9, timeout=15)
    finally:
        reloader.stop()
    assert _count(metrics, "ok") == 1
    assert caplog.text.count("policy set reloaded (notify)") == 1


@pytest.mark.postgres
def test_a_set_spool_dir_cannot_keep_still_goes_live(
    database_url: str, tmp_path: Path, loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A spool_dir that takes no file (its filesystem full: an audit spool grown during
    an outage) refused every set the database activated, and the start, as if Postgres
    were away. The file kept for a start without Postgres cannot be replaced here."""
    asyncio.run(_activate(database_url, "main", POLICY.format(name="main", limit=2)))
    (tmp_path / "spool" / LAST_GOOD_NAME).mkdir(parents=True)
    metrics = Metrics()
    _reload_from_the_database(metrics, loop_thread, tmp_path, database_url)
    assert _running(metrics)[1] == 0
    assert [path.name for path in (tmp_path / "spool").iterdir()] == [LAST_GOOD_NAME]
    assert "cannot keep the policy set" in caplog.text


@pytest.mark.postgres
def test_a_start_before_the_first_push_says_mail_goes_unfiltered(
    fresh_database_url: str, tmp_path: Path, loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """policy_dir unset, nothing pushed yet: the milter accepted every message unchanged
    and logged only "policy set e3b0c44298fc loaded" (a policy_dir without policies
    refuses the start). Said once, and no more once a policy is active."""
    said = "no policy is active in the database: every message is accepted unchanged"
    reloader = _reloader(Metrics(), loop_thread, tmp_path, database_url=fresh_database_url)
    holder = reloader.load_initial()
    assert not holder.current.policies
    assert caplog.text.count(said) == 1
    reloader.start()
    try:
        asyncio.run(_activate(fresh_database_url, "main", POLICY.format(name="main", limit=9)))
        assert wait_until(lambda: holder.current.limits.max_recipients == 9, timeout=15)
    finally:
        reloader.stop()
    assert caplog.text.count(said) == 1


# --- policy.load_failed ------------------------------------------------------

BROKEN = "version: 1\nname: main\nrules: [oops\n"
RULE = ("version: 1\nname: {name}\nrules:\n"
        "  - name: shared\n    when:\n      subject: x\n    then: reject\n")


def test_load_failed_payload_is_redacted_bounded_metadata() -> None:
    issues = [PolicyIssue("main.yaml", 3, 7, "bad value token=s3cr3t-v4lue-xyz here")]
    issues += [PolicyIssue("other.yaml", n, 1, "x" * 900) for n in range(1, 31)]
    payload = load_failed_payload("mx1", "file change", PolicyLoadError(issues))
    assert payload["instance"] == "mx1"
    assert payload["trigger"] == "file change"
    assert payload["sources"] == ["main.yaml", "other.yaml"]
    lines = payload["error"].split("\n")
    assert lines[0] == "main.yaml:3:7: bad value token=[REDACTED] here"
    assert len(lines) == MAX_ERROR_LINES + 1 and lines[-1] == "... and 11 more"
    assert all(len(line) <= MAX_LINE_CHARS for line in lines)
    assert "s3cr3t" not in json.dumps(payload)


def test_without_a_database_nothing_is_raised(loop_thread: LoopThread) -> None:
    notifier = LoadFailedNotifier(None, "mx1", loop_thread, Metrics())
    assert notifier.notify("signal", PolicyLoadError([PolicyIssue("a.yaml", 1, 1, "bad")])) is None


def test_an_unreachable_database_is_logged_and_counted(loop_thread: LoopThread) -> None:
    metrics = Metrics()
    notifier = LoadFailedNotifier("postgresql://postgres@127.0.0.1:1/none", "mx1", loop_thread,
                                  metrics)
    future = notifier.notify("signal", PolicyLoadError([PolicyIssue("a.yaml", 1, 1, "bad")]))
    assert future is not None
    with pytest.raises(OSError):
        future.result(timeout=15)
    assert wait_until(lambda: metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "policy_event"}) == 1, timeout=5)


async def _subscribe(dsn: str, name: str) -> None:
    """A subscribed endpoint, stored as the admin service stores a not yet sealed one."""
    conn = await connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO webhook_endpoints (name, url, url_origin, kind, events)"
            " VALUES ($1, 'https://hooks.example.com/pw', 'https://hooks.example.com', 'webhook',"
            " ARRAY['policy.load_failed'])", name)
    finally:
        await conn.close()


async def _load_failed_deliveries(dsn: str, endpoint: str) -> list[dict[str, Any]]:
    conn = await connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT e.payload::text AS payload, d.status FROM webhook_deliveries d"
            " JOIN webhook_events e ON e.id = d.event_id"
            " JOIN webhook_endpoints p ON p.id = d.endpoint_id"
            " WHERE e.type = 'policy.load_failed' AND p.name = $1 ORDER BY d.id", endpoint)
    finally:
        await conn.close()
    return [{"status": row["status"], **json.loads(row["payload"])} for row in rows]


def _deliveries(dsn: str, endpoint: str, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        found[:] = asyncio.run(_load_failed_deliveries(dsn, endpoint))
        return len(found) >= count

    assert wait_until(enough, timeout=15), found
    assert len(found) == count, found
    return found


def _watched_policies(database_url: str, tmp_path: Path, endpoint: str) -> Path:
    """A policy directory with one good file, and ``endpoint`` subscribed to its failures."""
    asyncio.run(_subscribe(database_url, endpoint))
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "main.yaml").write_text(POLICY.format(name="main", limit=5))
    return policy_dir


@pytest.mark.postgres
def test_a_broken_policy_file_raises_policy_load_failed(
    database_url: str, tmp_path: Path, loop_thread: LoopThread
) -> None:
    policy_dir = _watched_policies(database_url, tmp_path, "ops-files")
    metrics = Metrics()
    reloader = _reloader(metrics, loop_thread, tmp_path, policy_dir=policy_dir,
                         database_url=database_url)
    holder = reloader.load_initial()
    running = holder.current
    reloader.start()
    try:
        broken = policy_dir / "broken.yaml"
        broken.write_text(BROKEN)
        [first] = _deliveries(database_url, "ops-files", 1)
        reloader.request()  # SIGHUP: refused again, raised again
        second = _deliveries(database_url, "ops-files", 2)[1]
    finally:
        reloader.stop()
    assert holder.current is running
    assert first == {
        "status": "pending", "instance": "mx-test", "trigger": "file change",
        "sources": [str(broken)],
        "error": f"{broken}:3:8: YAML syntax error: this [ is not closed before the file ends "
                 "(close it with ])",
    }
    assert second["trigger"] == "signal" and second["error"] == first["error"]
    assert "oops" not in json.dumps([first, second])  # no policy content


@pytest.mark.postgres
def test_an_unexpected_error_while_loading_is_a_counted_refusal_with_its_event(
    database_url: str, tmp_path: Path, loop_thread: LoopThread,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    policy_dir = _watched_policies(database_url, tmp_path, "ops-unexpected")
    metrics = Metrics()
    reloader = _reloader(metrics, loop_thread, tmp_path, policy_dir=policy_dir,
                         database_url=database_url)
    holder = reloader.load_initial()

    def broken(paths: list[Path]) -> None:
        raise RuntimeError("a bug in the loader")

    monkeypatch.setattr(reload_module, "load_policy_set", broken)  # the fault injected
    (policy_dir / "main.yaml").write_text(POLICY.format(name="main", limit=7))
    assert not reloader.reload("test")
    assert holder.current.limits.max_recipients == 5
    assert (_count(metrics, "ok"), _count(metrics, "failed")) == (0, 1)
    assert "unexpected RuntimeError (logged above)" in caplog.text
    assert "a bug in the loader" in caplog.text  # the traceback, in the log only
    [event] = _deliveries(database_url, "ops-unexpected", 1)
    assert event == {
        "status": "pending", "instance": "mx-test", "trigger": "test", "sources": [],
        "error": "unexpected RuntimeError while loading (see the milter's log)",
    }


@pytest.mark.postgres
def test_of_several_workers_one_announces_a_refused_set(
    database_url: str, tmp_path: Path, loop_thread: LoopThread
) -> None:
    """Each worker process refuses the same broken file; one event says so, not one each."""
    policy_dir = _watched_policies(database_url, tmp_path, "ops-workers")
    workers = [(Metrics(), index) for index in range(2)]
    reloaders = [_reloader(metrics, loop_thread, tmp_path / str(index), policy_dir=policy_dir,
                           database_url=database_url, announce_failures=index == 0)
                 for metrics, index in workers]
    for reloader in reloaders:
        reloader.load_initial()
        reloader.start()
    try:
        (policy_dir / "broken.yaml").write_text(BROKEN)
        assert wait_until(lambda: all(_count(m, "failed") == 1 for m, _ in workers), timeout=15)
        [event] = _deliveries(database_url, "ops-workers", 1)
        time.sleep(1)  # a second event would have been written by now
        assert len(asyncio.run(_load_failed_deliveries(database_url, "ops-workers"))) == 1
    finally:
        for reloader in reloaders:
            reloader.stop()
    assert event["trigger"] == "file change"


@pytest.mark.postgres
def test_a_conflicting_database_revision_raises_policy_load_failed(
    database_url: str, tmp_path: Path, loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="postwarden_milter.reload")
    asyncio.run(_subscribe(database_url, "ops-revisions"))
    asyncio.run(_activate(database_url, "first", RULE.format(name="first")))
    metrics = Metrics()
    reloader = _reloader(metrics, loop_thread, tmp_path, database_url=database_url)
    holder = reloader.load_initial()
    reloader.start()
    try:
        assert wait_until(lambda: _listens(caplog), timeout=15)
        running = holder.current
        # Each revision loads alone; together they reuse a rule name, so the set is refused.
        asyncio.run(_activate(database_url, "second", RULE.format(name="second")))
        [event] = _deliveries(database_url, "ops-revisions", 1)
    finally:
        reloader.stop()
        asyncio.run(_deactivate(database_url, "first", "second"))
    assert holder.current is running
    assert _count(metrics, "failed") == 1
    assert event["trigger"] == "notify" and event["instance"] == "mx-test"
    [label] = event["sources"]
    assert re.fullmatch(r"second@r\d+", label)
    assert re.fullmatch(rf"{label}:4:11: rule name 'shared' is also used at first@r\d+:4:11",
                        event["error"])


@pytest.mark.postgres
def test_a_start_on_a_refused_database_set_runs_the_last_good_one(
    database_url: str, tmp_path: Path, loop_thread: LoopThread
) -> None:
    """An activation the running milter refused (and filtered on through) stopped its
    next start, and every replacement of a worker process, with "policies do not load"."""
    asyncio.run(_subscribe(database_url, "ops-restarts"))
    asyncio.run(_activate(database_url, "first", RULE.format(name="first")))
    running = _reloader(Metrics(), loop_thread, tmp_path, database_url=database_url)
    good = running.load_initial().current
    asyncio.run(_activate(database_url, "second", RULE.format(name="second")))
    metrics = Metrics()
    try:
        restarted = _reloader(metrics, loop_thread, tmp_path, database_url=database_url)
        assert restarted.load_initial().current.content_hash == good.content_hash
        [event] = _deliveries(database_url, "ops-restarts", 1)
    finally:
        asyncio.run(_deactivate(database_url, "first", "second"))
    assert _running(metrics) == ({good.content_hash[:12]}, 1)
    assert _count(metrics, "failed") == 1
    assert event["trigger"] == "start"
    assert re.fullmatch(r"second@r\d+", event["sources"][0])


async def _deactivate(dsn: str, *names: str) -> None:
    conn = await connect(dsn)
    try:
        await conn.execute("DELETE FROM active_policies WHERE policy_name = ANY($1)", list(names))
    finally:
        await conn.close()


# --- a mistake in a policy's tests ------------------------------------------

RENAMED = ("version: 1\nname: main\nrules:\n  - name: block-exe-v2\n    when:\n"
           "      subject: x\n    then: reject\ntests:\n  - name: exe\n"
           "    raw: \"Subject: x\\n\\nhi\\n\"\n    recipients: [a@b.test]\n    expect: reject\n"
           "    expect_rules: [block-exe]\n")  # the rule renamed, the case not updated
TOLD = "13:20: test 'exe': unknown rule 'block-exe' in expect_rules (did you mean 'block-exe-v2'?)"


def test_a_case_expecting_a_renamed_rule_is_told_and_the_files_load(
    tmp_path: Path, loop_thread: LoopThread, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Tests never stop filtering (as a misspelt limit there): the milter refused to start."""
    policy, _, reloader = _file_reloader(tmp_path, loop_thread)
    policy.write_text(RENAMED)
    holder = reloader.load_initial()
    assert [rule.name for rule in holder.current.enforced_rules] == ["block-exe-v2"]
    assert f"{policy}:{TOLD}" in caplog.text
    assert policy_cli(["check", str(policy)]) == 2  # where the tests run, refused at its line
    assert f"{policy}:{TOLD}\n" in capsys.readouterr().err


def test_a_revision_expecting_a_renamed_rule_is_told_and_the_set_loads(
    database_url: str, tmp_path: Path, loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    asyncio.run(_activate(database_url, "main", RENAMED))
    try:
        reloader = _reloader(Metrics(), loop_thread, tmp_path, database_url=database_url)
        holder = reloader.load_initial()
    finally:
        asyncio.run(_deactivate(database_url, "main"))
    assert [rule.name for rule in holder.current.enforced_rules] == ["block-exe-v2"]
    assert re.search(rf"main@r\d+:{re.escape(TOLD)}", caplog.text)
