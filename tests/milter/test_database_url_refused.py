"""A database_url the server refuses is no outage: the admin must fix it. Mail still flows
(its audit events spooled), but the writer says what the server refused at each try, as
an error counted apart (audit_db_refused), `check` fails on it
(test_database_reasons.py), and options in the URL the
server refuses (which only a fixed URL mends) refuse the start as invalid settings do."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from postwarden_milter.audit_pipeline import AuditPipeline
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.settings import SpoolFullAction
from postwarden_milter.spool import AuditSpool, SpoolBudget
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import wait_until
from tests.milter.test_process import POLICY
from tests.store.test_audit import make_event

pytestmark = pytest.mark.postgres

# What the server answers (never quoting a password), for each way of refusing.
REFUSED = {
    "role": ('role "nobody" does not exist', lambda p: p._replace(
        netloc="nobody:hunter2@" + p.netloc.rpartition("@")[2])),
    "database": ('database "no_such_db" does not exist', lambda p: p._replace(
        path="/no_such_db")),
    # Refused at start too; the server's TLS turned off while the milter runs.
    "tls": ("rejected SSL upgrade", lambda p: p._replace(query="sslmode=require")),
}
BAD_OPTIONS = {
    "unknown": ('unrecognized configuration parameter "foo"', "foo=bar"),
    "value": ('invalid value for parameter "statement_timeout": "soon"',
              "statement_timeout=soon"),
}


def _refused_url(database_url: str, case: str) -> str:
    return urlunsplit(REFUSED[case][1](urlsplit(database_url)))


def _milter(args: list[str], tmp_path: Path, database_url: str
            ) -> subprocess.CompletedProcess[str]:
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "main.yaml").write_text(POLICY.format(limit=5))
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    env |= {"POSTWARDEN_POLICY_DIR": str(policies),
            "POSTWARDEN_SPOOL_DIR": str(tmp_path / "spool"),
            "POSTWARDEN_MILTER_SOCKET": f"inet:{free_port()}@127.0.0.1",
            "POSTWARDEN_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "postwarden_milter", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_options_the_server_refuses_refuse_the_start(
        tmp_path: Path, database_url: str, case: str) -> None:
    said, option = BAD_OPTIONS[case]
    url = f"{database_url}{'&' if '?' in database_url else '?'}{option}"
    for args in (["check"], []):
        result = _milter(args, tmp_path, url)
        assert result.returncode == 2
        assert f"postwarden-milter: database_url: the server refuses its options: {said}" \
            in result.stderr.splitlines()


def test_tls_the_server_does_not_offer_refuses_the_start(tmp_path: Path,
                                                         database_url: str) -> None:
    """sslmode=require against a server without TLS: told as an outage ("database
    unreachable at start", exit 0), the milter spooled every event for ever."""
    url = f"{database_url}{'&' if '?' in database_url else '?'}sslmode=require"
    for args in (["check"], []):
        result = _milter(args, tmp_path, url)
        assert result.returncode == 2
        assert ("postwarden-milter: database_url: its sslmode (require, verify-ca or "
                "verify-full, or that of PGSSLMODE) needs TLS, and the server does not offer "
                "TLS: enable ssl on the server, or set sslmode=prefer or disable"
                ) in result.stderr.splitlines()


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_writer_tells_a_refusal_at_each_try_and_counts_it_apart(
        tmp_path: Path, database_url: str, case: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    metrics = Metrics()
    spool = AuditSpool(tmp_path, SpoolBudget(10**9))
    pipeline = AuditPipeline(_refused_url(database_url, case), spool, metrics,
                             queue_size=100, spool_full_action=SpoolFullAction.TEMPFAIL)
    loop = LoopThread()
    loop.start()
    pipeline.start(loop)
    try:
        pipeline.submit(make_event())

        def refusals() -> float:
            return metrics.registry.get_sample_value(
                "postwarden_errors_total", {"kind": "audit_db_refused"}) or 0

        assert wait_until(lambda: refusals() >= 2, timeout=15)  # told again at the retry
    finally:
        pipeline.stop()
        loop.stop()
    assert metrics.registry.get_sample_value(
        "postwarden_errors_total", {"kind": "audit_db"}) == 0
    told = [r for r in caplog.records if "refuses database_url" in r.getMessage()]
    assert len(told) >= 2 and {r.levelname for r in told} == {"ERROR"}
    assert REFUSED[case][0] in told[0].getMessage()
    assert "hunter2" not in caplog.text
    assert spool.size > 0  # the event waits in the spool
