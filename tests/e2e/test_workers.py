"""Several worker processes on one socket (`processes: 2`) behind the real Postfix:
mail is checked by whichever worker accepts the connection, and the milter still
behaves as one: re-deliveries are recognised across workers, one metrics
endpoint counts every message, SIGHUP reaches every worker, a worker that dies
is replaced, and SIGTERM stops them all."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.ports import free_port
from tests.fixtures.postfix import send_message, wait_for
from tests.fixtures.processes import children_of
from tests.fixtures.scrape import scrape

from . import messages
from .conftest import MailSystem, audit_rows, mail_system_for
from .messages import RECIPIENT, SENDER

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

WORKERS = 2
POLICY = """\
version: 1
name: workers
rules:
  - name: seen-before
    when: {{duplicate: true}}
    then: reject
    code: "550 5.7.1"
    message: Already delivered
{extra}"""
BLOCK_MARKED = """\
  - name: block-marked
    when:
      subject: '\\[blocked\\]'
    then: reject
    code: "550 5.7.1"
    message: Marked as blocked
"""


def wait_for_workers(parent: int, gone: int | None = None) -> set[int]:
    """The full set of workers, once ``gone`` is no longer among them."""
    def ready() -> set[int] | None:
        workers = children_of(parent)
        return workers if len(workers) == WORKERS and gone not in workers else None

    found: set[int] = wait_for(ready, 20)
    return found


def messages_counted(port: int) -> float:
    return sum(value for (name, _), value in scrape(port).items()
               if name == "postwarden_messages_total")


@pytest.fixture
def workers_system(database_url: str, tmp_path: Path) -> Iterator[tuple[MailSystem, Path, int]]:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "main.yaml").write_text(POLICY.format(extra=""))
    metrics_port = free_port()
    env = {"POSTWARDEN_PROCESSES": str(WORKERS),
           "POSTWARDEN_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
           "POSTWARDEN_POLICY_POLL_SECONDS": "0"}  # reload on SIGHUP only
    with mail_system_for(database_url, policy_dir, env=env) as system:
        yield system, policy_dir, metrics_port


def test_workers_share_the_work_and_act_as_one(
        workers_system: tuple[MailSystem, Path, int]) -> None:
    system, policy_dir, metrics_port = workers_system
    port, milter = system.postfix.port, system.milter
    assert milter.pid is not None
    parent = milter.pid
    first_workers = wait_for_workers(parent)

    # Each message on its own SMTP connection, so on its own milter connection.
    clean = [messages.clean(subject=f"worker mail {n}") for n in range(8)]
    for sample in clean:
        assert send_message(port, sample.data, SENDER, [RECIPIENT]).accepted
    for sample in clean:
        system.audit_row(sample.message_id)

    # Re-delivered copies: recognised whichever worker gets them (a table per
    # worker would let about half through).
    again = [send_message(port, clean[0].data, SENDER, [RECIPIENT]) for _ in range(6)]
    assert [result.code for result in again] == [550] * 6, again
    assert all("Already delivered" in result.text for result in again)

    # One endpoint, every worker's messages.
    assert wait_for(lambda: messages_counted(metrics_port) == 8 + 6 or None, 10)

    # SIGHUP reaches every worker: each new connection sees the new rule.
    (policy_dir / "main.yaml").write_text(POLICY.format(extra=BLOCK_MARKED))
    milter.reload()
    wait_for(lambda: len(re.findall(r"policy set reloaded \(signal\)", milter.log()))
             == WORKERS or None, 20)
    blocked = [send_message(port, messages.clean(subject=f"[blocked] {n}").data, SENDER,
                            [RECIPIENT]) for n in range(6)]
    assert [result.code for result in blocked] == [550] * 6, blocked

    # A worker that dies is replaced; mail goes on.
    victim = min(first_workers)
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for_workers(parent, gone=victim)
    assert re.search(rf"worker \d \(pid {victim}\) ended \(signal SIGKILL\)", milter.log())
    later = [messages.clean(subject=f"after replacement {n}") for n in range(6)]
    for sample in later:
        assert send_message(port, sample.data, SENDER, [RECIPIENT]).accepted
    assert wait_for(lambda: scrape(metrics_port).get(
        ("postwarden_worker_restarts_total", frozenset())) == 1 or None, 10)

    # SIGTERM: every worker stops in order (each drains its audit queue), then the parent.
    assert milter.stop() == 0
    for pid in replaced:
        assert not Path(f"/proc/{pid}").exists()
    assert system.database_url is not None
    for sample in later:
        assert len(audit_rows(system.database_url, sample.message_id)) == 1

