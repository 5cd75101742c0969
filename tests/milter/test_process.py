"""The milter process: start-up checks, signals, migrate, log lines."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from postwarden_milter.logcontext import (
    LOG_FORMAT,
    MAX_LOG_MESSAGE,
    MessageContextFilter,
    set_message_context,
)
from postwarden_milter.startup_checks import listen_refused
from postwarden_policies import load_policy_set
from postwarden_policies.redact import RedactingFormatter
from tests.conftest import PgServer
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import create_database, drop_database, wait_until
from tests.fixtures.processes import children_of, running

POLICY = "version: 1\nname: main\nlimits:\n  max_recipients: {limit}\n"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir(exist_ok=True)
    (policy_dir / "main.yaml").write_text(POLICY.format(limit=5))
    base = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    return {
        **base,
        "POSTWARDEN_POLICY_DIR": str(policy_dir),
        "POSTWARDEN_SPOOL_DIR": str(tmp_path / "spool"),
        "POSTWARDEN_MILTER_SOCKET": f"inet:{free_port()}@127.0.0.1",
        "POSTWARDEN_POLICY_POLL_SECONDS": "0",  # reload on SIGHUP only
        **{f"POSTWARDEN_{k.upper()}": v for k, v in extra.items()},
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postwarden_milter", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@contextmanager
def _serving(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The milter in the background, its output in ``log_path``; killed if still running."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "postwarden_milter"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def empty_database(pg_server: PgServer) -> Iterator[str]:
    name = asyncio.run(create_database(pg_server.admin_dsn))
    yield pg_server.dsn(name)
    asyncio.run(drop_database(pg_server.admin_dsn, name))


@pytest.mark.postgres
@pytest.mark.parametrize("processes", [1, 2])
def test_refuses_pending_migrations_until_migrate_runs(
    tmp_path: Path, empty_database: str, processes: int
) -> None:
    """Exit 1, which systemd restarts until the migrations ran (they may run from another
    host); exit 2 kept the milter down after them, and Postfix deferring all mail."""
    env = _env(tmp_path, database_url=empty_database, processes=str(processes))
    refused = _run([], env)
    assert refused.returncode == 1
    assert "postwarden-milter migrate" in refused.stderr
    assert "no postwarden schema (never migrated)" in refused.stderr

    migrated = _run(["migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 0001_audit" in migrated.stdout


@pytest.mark.postgres
def test_a_database_another_build_migrated_refuses_the_start_in_one_line(
    tmp_path: Path, empty_database: str
) -> None:
    """An applied migration that differs from this build's: exit 2 naming it, no traceback."""
    env = _env(tmp_path, database_url=empty_database)
    assert _run(["migrate"], env).returncode == 0

    async def edit() -> None:
        conn = await asyncpg.connect(empty_database)
        try:
            await conn.execute("UPDATE schema_migrations SET checksum = 'other' "
                               "WHERE version = '0001_audit'")
        finally:
            await conn.close()

    asyncio.run(edit())
    for command in ([], ["check"]):
        refused = _run(command, env)
        assert refused.returncode == 2, refused.stderr
        assert "migration 0001_audit differs from the one applied" in refused.stderr
        assert "Traceback" not in refused.stderr


@pytest.mark.postgres
def test_check_says_whether_the_milter_would_start(tmp_path: Path, empty_database: str
                                                   ) -> None:
    """``check`` runs start-up's checks without serving: for a deployment, or before a
    reload."""
    env = _env(tmp_path, database_url=empty_database)
    pending = _run(["check"], env)
    assert pending.returncode == 2 and "postwarden-milter migrate" in pending.stderr
    assert _run(["migrate"], env).returncode == 0
    ok = _run(["check"], env)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0] == "settings: ok (environment only)"
    assert lines[1].startswith(f"policies: 1 from {tmp_path / 'policies'}, set ")
    assert lines[2:] == ["database: schema up to date"]
    assert "listening on" not in ok.stderr  # nothing served
    away = _run(["check"], {**env, "POSTWARDEN_DATABASE_URL":
                            f"postgresql://postwarden@127.0.0.1:{free_port()}/x"})
    assert away.returncode == 0, away.stderr  # start would go on, spooling audit events
    assert away.stdout.splitlines()[2:] == [
        "database: unreachable; the milter would start and spool audit events"]
    (tmp_path / "policies" / "main.yaml").write_text("version: 1\nname: [\n")
    broken = _run(["check"], env)
    assert broken.returncode == 2
    assert "policies do not load" in broken.stderr and "main.yaml" in broken.stderr
    invalid = _run(["check"], {**env, "POSTWARDEN_FAIL_ACTION": "shrug"})
    assert invalid.returncode == 2 and "fail_action" in invalid.stderr


@pytest.mark.parametrize("processes", [1, 2])
def test_runs_reloads_on_sighup_serves_metrics_and_stops_on_sigterm(
        tmp_path: Path, processes: int) -> None:
    metrics_port = free_port()
    env = _env(tmp_path, metrics_listen=f"127.0.0.1:{metrics_port}", processes=str(processes))
    log_path = tmp_path / "milter.log"
    with _serving(env, log_path) as proc:
        assert wait_until(lambda: "listening on" in log_path.read_text(), timeout=30)
        (tmp_path / "policies" / "main.yaml").write_text(POLICY.format(limit=6))
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: log_path.read_text().count("policy set reloaded (signal)")
                          == processes, timeout=15)
        assert proc.poll() is None  # libmilter would have stopped on SIGHUP
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        running = load_policy_set([tmp_path / "policies"]).content_hash[:12]
        with urllib.request.urlopen(url, timeout=5) as response:
            exposition = response.read().decode()
        assert f'postwarden_policy_reloads_total{{result="ok"}} {processes}.0' in exposition
        # every worker runs the new set, none failed its reload
        assert f'postwarden_policy_set{{hash="{running}"}} {processes}.0' in exposition
        assert "postwarden_policy_reload_failing 0.0" in exposition
        # Counted by each worker, as the README says: a refused edit adds one per worker.
        assert "# HELP postwarden_policy_reloads_total Policy set loads by result, counted " \
            "by each worker process" in exposition
        (tmp_path / "policies" / "main.yaml").write_text("version: 1\nname: [\n")
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: log_path.read_text().count("refused, keeping the running set")
                          == processes, timeout=15)
        with urllib.request.urlopen(url, timeout=5) as response:
            exposition = response.read().decode()
        assert f'postwarden_policy_reloads_total{{result="failed"}} {processes}.0' in exposition
        assert f'postwarden_policy_reloads_total{{result="initial"}} {processes}.0' \
            in exposition
        assert f"postwarden_policy_reload_failing {processes}.0" in exposition
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 15
    assert log_path.read_text().count("postwarden milter stopped") == processes + (processes > 1)
    if processes > 1:  # passed on as signals libmilter's own signal thread does not take
        text = log_path.read_text()
        assert text.count("SIGUSR1: reloading policies") == 2 * processes  # two SIGHUPs
        assert text.count("SIGUSR2: stopping") == processes


def test_check_and_the_start_name_every_problem_of_the_policies(tmp_path: Path) -> None:
    """As `postwarden-policy check` does. They named the first and "(and 2 more)": the
    admin mended one, ran check again, and found the next."""
    env = _env(tmp_path)
    policies = tmp_path / "policies"
    (policies / "main.yaml").write_text("version: 1\nname: [\n")
    (policies / "other.yaml").write_text("version: 1\nname: other\nrules: 5\nmode: loud\n")
    for args in (["check"], []):
        result = _run(args, env)
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        [first] = [n for n, line in enumerate(lines) if "policies do not load" in line]
        problems = lines[first:first + 3]
        assert problems[0].startswith(f"postwarden-milter: policies do not load: "
                                      f"{policies / 'main.yaml'}:3:1: ")
        assert [line.split(": ", 1)[0] for line in problems[1:]] == [
            f"  {policies / 'other.yaml'}:3:8", f"  {policies / 'other.yaml'}:4:7"]
        assert "more)" not in result.stderr


@pytest.mark.parametrize("processes", [1, 2])
def test_broken_policy_refuses_to_start(tmp_path: Path, processes: int) -> None:
    metrics_port = free_port()
    env = _env(tmp_path, processes=str(processes), metrics_listen=f"127.0.0.1:{metrics_port}")
    (tmp_path / "policies" / "main.yaml").write_text("version: 1\nname: [\n")
    result = _run([], env)
    assert result.returncode == 2
    assert "policies do not load" in result.stderr and "main.yaml" in result.stderr
    assert "listening on" not in result.stderr  # refused before the socket opened


def test_workers_stop_promptly_after_connections(tmp_path: Path) -> None:
    """Every worker wakes for each connection and all but one lose the race for it:
    none may then sit in accept() holding the lock its stop needs."""
    port = free_port()
    env = _env(tmp_path, processes="2", milter_socket=f"inet:{port}@127.0.0.1")
    log_path = tmp_path / "milter.log"
    with _serving(env, log_path) as proc:
        assert wait_until(lambda: log_path.read_text().count("starting on") == 2, timeout=30)
        for _ in range(5):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            time.sleep(0.2)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 15, log_path.read_text()


def test_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    env = _env(tmp_path, processes="2")
    log_path = tmp_path / "milter.log"
    workers: list[int] = []
    try:
        with _serving(env, log_path) as proc:
            assert wait_until(lambda: log_path.read_text().count("starting on") == 2,
                              timeout=30)
            workers = sorted(children_of(proc.pid))
            assert len(workers) == 2
            proc.kill()
            proc.wait(10)
            assert wait_until(lambda: not any(running(pid) for pid in workers), timeout=20), \
                log_path.read_text()
            text = log_path.read_text()
            assert text.count("postwarden milter stopped") == 2  # in order
            # Why they stop: nothing else in their log says that the parent is gone.
            assert text.count("SIGUSR2: stopping (the parent process is gone)") == 2, text
    finally:
        for pid in workers:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("processes", [1, 2])
def test_a_removed_socket_file_stops_the_milter_for_a_restart(
        tmp_path: Path, processes: int) -> None:
    """Postfix cannot reach a milter whose socket file is gone: exit 1, so that systemd's
    Restart=on-failure makes a new one, instead of serving nobody (one process did)."""
    path = tmp_path / "milter.sock"
    env = _env(tmp_path, processes=str(processes), milter_socket=f"unix:{path}")
    log_path = tmp_path / "milter.log"
    with _serving(env, log_path) as proc:
        assert wait_until(lambda: log_path.read_text().count("starting on") == processes,
                          timeout=30)
        path.unlink()
        assert proc.wait(timeout=30) == 1
        text = log_path.read_text()
        assert f"the socket file of unix:{path} was removed or replaced" in text
        # In order: the workers' drain, then the parent's.
        assert text.count("postwarden milter stopped") == processes + (processes > 1)


@pytest.mark.parametrize("processes", [1, 2])
def test_no_policy_source_at_start_stops_the_milter_for_a_restart(
        tmp_path: Path, processes: int) -> None:
    """Policies from a database that is away, and no last good set (a first start): exit 1,
    which systemd restarts until Postgres is back. Exit 2, the status of invalid settings,
    which the unit does not restart, left the milter down for good when Postgres came up
    after it, and Postfix deferring all mail."""
    env = _env(tmp_path, processes=str(processes), policy_dir="",
               database_url=f"postgresql://postwarden@127.0.0.1:{free_port()}/none")
    result = _run([], env)
    assert result.returncode == 1, result.stderr
    assert "no policy set: database unreachable (ConnectionRefusedError: Connect call " \
        "failed" in result.stderr  # with the reason, as the warning before it
    checked = _run(["check"], env)  # it said "would not start", and exited 0
    assert checked.returncode == 1, checked.stderr
    assert checked.stderr.splitlines()[-1] == (
        "postwarden-milter: database: unreachable, and no usable last good policy set in "
        "spool_dir; the milter would not start (exit 1) until it is back")
    if processes > 1:  # the parent opened the socket, then the workers failed, and again
        assert "listening on" in result.stderr
        assert "worker 0 (pid" in result.stderr and "no worker process runs" in result.stderr


@pytest.mark.parametrize(("content", "problem"), [
    (b"", "empty"),
    (b"\xff\xfe{", "not UTF-8 text"),
    (b'[["main.yaml", "version: 1"', "not JSON (Expecting"),
    (b'{"main.yaml": "version: 1"}', "not a list of [file name, policy text] pairs"),
    (b'["ab"]', "not a list of [file name, policy text] pairs"),
    (b'[["main.yaml", "version: ["]]', "policy did not load: main.yaml"),
])
def test_a_last_good_set_a_start_cannot_run_is_named(
        tmp_path: Path, content: bytes, problem: str) -> None:
    """Policies from a database that is away, and a last good set emptied, damaged or
    edited by hand: the start ended in a traceback (or, one it could not read, blamed
    the database alone), and check said the milter would start. Both name the file and
    its problem now, and exit 1, as with no last good set: the database's return mends
    it (the set is kept again once read from there)."""
    env = _env(tmp_path, policy_dir="",
               database_url=f"postgresql://postwarden@127.0.0.1:{free_port()}/none")
    (tmp_path / "spool").mkdir()
    path = tmp_path / "spool" / "policies-last-good.json"
    path.write_bytes(content)
    said = f"cannot fall back on the last good policy set: {path}: {problem}"
    result = _run([], env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert said in result.stderr
    assert "postwarden-milter: no policy set: database unreachable (" in result.stderr
    checked = _run(["check"], env)
    assert checked.returncode == 1, checked.stderr
    assert said in checked.stderr


def test_log_lines_carry_ids_and_are_redacted() -> None:
    record = logging.LogRecord("postwarden", logging.INFO, __file__, 1,
                               "connecting to %s", ("postgresql://app:hunter2@db/x",), None)
    set_message_context("4QLOG", "uid-1")
    try:
        assert MessageContextFilter().filter(record)
    finally:
        set_message_context(None, None)
    line = RedactingFormatter(LOG_FORMAT, max_message=MAX_LOG_MESSAGE).format(record)
    assert "[4QLOG uid-1]" in line
    assert "hunter2" not in line and "app:[REDACTED]@db" in line
    record.args = ("x" * MAX_LOG_MESSAGE + "password=hunter2",)
    line = RedactingFormatter(LOG_FORMAT, max_message=MAX_LOG_MESSAGE).format(record)
    assert line.endswith("...[truncated]") and "hunter2" not in line


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize(("family", "host"), [
    (socket.AF_INET, "127.0.0.1"),
    # In brackets, as libmilter takes it: the reason was a "Name or service not known"
    # (exit 2) of the probe that binds it to find the reason.
    (socket.AF_INET6, "[::1]"),
])
def test_a_port_in_use_is_told_with_the_reason_and_retried_by_the_unit(
        tmp_path: Path, processes: int, family: socket.AddressFamily, host: str) -> None:
    """Exit 1, as a metrics port in use (below): the process holding it may let it go.
    Exit 2 (invalid settings) left the milter down for good."""
    with socket.socket(family) as taken:
        taken.bind((host.strip("[]"), 0))
        taken.listen()
        kind = "inet6" if family == socket.AF_INET6 else "inet"
        spec = f"{kind}:{taken.getsockname()[1]}@{host}"
        result = _run([], _env(tmp_path, milter_socket=spec, processes=str(processes)))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    refusal = lines.index(
        f"postwarden-milter: milter_socket: cannot serve on {spec}: Address already in use")
    # Told once, last: one process also logged libmilter's own words, as an ERROR
    # ("libmilter stopped: cannot opensocket"), and said it was starting, before.
    assert not [line for line in lines if "libmilter stopped" in line]
    assert not [line for line in lines if "starting on" in line], lines[:refusal]


@pytest.mark.parametrize("processes", [1, 2])
def test_a_unix_socket_that_cannot_be_made_was_never_said_started_on(
        tmp_path: Path, processes: int) -> None:
    """One process said "starting on" before libmilter opened its socket: the admin read
    a start that never was (here a directory that takes no socket file, as /proc)."""
    spec = "unix:/proc/postwarden-milter.sock"
    result = _run([], _env(tmp_path, milter_socket=spec, processes=str(processes)))
    assert result.returncode == 2, result.stderr
    assert f"postwarden-milter: milter_socket: cannot serve on {spec}" in result.stderr
    assert "starting on" not in result.stderr


@pytest.mark.parametrize("processes", [1, 2])
def test_a_metrics_port_in_use_is_retried_by_the_unit(tmp_path: Path, processes: int) -> None:
    """Exit 1, as the admin service's `listen` in use: the unit restarts it until the
    port is free. Exit 2 (invalid settings) left the milter down for good."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        result = _run([], _env(tmp_path, metrics_listen=listen, processes=str(processes)))
    assert result.returncode == 1
    assert f"postwarden-milter: metrics_listen: cannot listen on {listen}: " \
        "Address already in use" in result.stderr.splitlines()


# 192.0.2.0/24 (TEST-NET-1) is on no host: as an address not added yet (a VIP, at boot).
@pytest.mark.parametrize(("setting", "value", "told"), [
    ("milter_socket", "inet:{port}@192.0.2.7", "milter_socket: cannot serve on {value}"),
    ("metrics_listen", "192.0.2.7:{port}", "metrics_listen: cannot listen on {value}"),
])
def test_an_address_not_on_the_host_yet_is_retried_by_the_unit(
        tmp_path: Path, setting: str, value: str, told: str) -> None:
    """Exit 1: at boot the address may come after the milter (network-online.target
    waits for no particular one). Exit 2 left the milter down for good, Postfix
    deferring all mail, once the address was up."""
    value = value.format(port=free_port())
    result = _run([], _env(tmp_path, **{setting: value}))
    assert result.returncode == 1, result.stderr
    assert f"postwarden-milter: {told.format(value=value)}: Cannot assign requested address" \
        in result.stderr.splitlines()


@pytest.mark.parametrize(("errno_", "status"), [
    (socket.EAI_AGAIN, 1),  # no answer from the resolver yet (at boot)
    (socket.EAI_NONAME, 2),  # the name does not exist: misspelt
    (errno.EACCES, 2),
])
def test_a_host_name_not_resolved_for_want_of_an_answer_is_retried(
        errno_: int, status: int) -> None:
    problem = OSError(errno_, os.strerror(errno_) if errno_ > 0 else "resolver")
    assert listen_refused("milter_socket: cannot serve on X", problem).exit_status == status
