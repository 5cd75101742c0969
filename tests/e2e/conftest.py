"""End-to-end fixtures: the real milter subprocess behind a private Postfix, audit rows in Postgres.

`mail_system` is shared by a test module (starting Postfix takes seconds);
tests that kill the milter or stop Postgres build their own with
`mail_system_for`.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.fixtures.milterproc import MilterProcess, running_milter
from tests.fixtures.postfix import (
    LOOPBACK,
    CaptureServer,
    PostfixInstance,
    running_postfix,
    wait_for,
)

POLICY_DIR = Path(__file__).parent / "policies"


@dataclass(frozen=True)
class MailSystem:
    postfix: PostfixInstance
    capture: CaptureServer
    milter: MilterProcess
    database_url: str | None

    def queue_id_of(self, message_id: str, timeout: float = 20.0) -> str:
        """The queue id Postfix's cleanup logged for this Message-ID."""
        match = self.postfix.wait_for_log(
            rf"postfix/cleanup\[\d+\]: (\w+): message-id={re.escape(message_id)}", timeout
        )
        return match.group(1)

    def audit_row(self, message_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """Wait for the one audit row of this Message-ID (the writer batches)."""
        dsn = self.database_url
        assert dsn is not None
        try:
            rows: list[dict[str, Any]] = wait_for(lambda: audit_rows(dsn, message_id), timeout)
        except TimeoutError:
            recent = [(r["queue_id"], r["message_id"], r["action"]) for r in audit_rows(dsn)]
            raise AssertionError(f"no audit row for {message_id}; rows: {recent[-10:]}") from None
        assert len(rows) == 1, rows
        return rows[0]


async def _fetch(database_url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        return [dict(row) for row in await conn.fetch(query, *args)]
    finally:
        await conn.close()


def audit_rows(database_url: str, message_id: str | None = None) -> list[dict[str, Any]]:
    if message_id is None:
        return asyncio.run(_fetch(database_url, "SELECT * FROM audit_events ORDER BY time"))
    return asyncio.run(
        _fetch(database_url, "SELECT * FROM audit_events WHERE message_id = $1", message_id)
    )


def faulty(directory: Path, code: str) -> dict[str, str]:
    """The milter's environment for ``code`` to run as it starts (a sitecustomize in
    ``directory``, first on its PYTHONPATH): a fault of ours injected into the real
    process, the only way to make it fail where nothing from outside can."""
    (directory / "sitecustomize.py").write_text(code)
    return {"PYTHONPATH": os.pathsep.join(filter(None, (str(directory),
                                                        os.environ.get("PYTHONPATH"))))}


# The systems alive right now, so a failing test's report can show their logs.
_ACTIVE: list[MailSystem] = []


@contextmanager
def mail_system_for(
    database_url: str | None,
    policy_dir: Path = POLICY_DIR,
    env: Mapping[str, str] | None = None,
    unix_socket: bool = False,
    main: Mapping[str, str] | None = None,
    *,
    after: str | None = None,
    host: str = LOOPBACK,
) -> Iterator[MailSystem]:
    """`env` adds or overrides the milter's settings (POSTWARDEN_POLICY_DIR="": database mode);
    `unix_socket` puts Postfix and the milter on a unix socket instead of loopback TCP;
    `main` adds or overrides Postfix settings (e.g. non_smtpd_milters); `after` is
    another milter's spec, which Postfix calls after ours (a DKIM signer's place);
    `host` LOOPBACK_V6 makes Postfix IPv6-only (tests.fixtures.postfix)."""
    with (
        running_milter(policy_dir, database_url,
                       env={"POSTWARDEN_LOG_LEVEL": "DEBUG", **(env or {})},
                       unix_socket=unix_socket) as milter,
        running_postfix(milter=", ".join(filter(None, (milter.postfix_spec, after))),
                        main=main, host=host) as (postfix, capture),
    ):
        system = MailSystem(postfix, capture, milter, database_url)
        _ACTIVE.append(system)
        try:
            yield system
        finally:
            _ACTIVE.remove(system)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for system in _ACTIVE:
            report.sections.append(("milter log", system.milter.log()[-20000:]))
            report.sections.append(("postfix log", system.postfix.log()[-20000:]))
    return report


@pytest.fixture(scope="module")
def mail_system(database_url: str) -> Iterator[MailSystem]:
    """On a unix socket, as contrib/postfix recommends; the failure tests use TCP."""
    with mail_system_for(database_url, unix_socket=True) as system:
        yield system
