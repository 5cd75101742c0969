"""Policy revisions from the admin API reaching a running milter (database mode).

The milter runs with no policy directory: its set is the database's active
revisions, reloaded on NOTIFY. Uploading and activating through the admin
API changes what a real Postfix answers; rolling back changes it back.

A milter that takes its policies from a directory but has a database
refuses a broken file and reports it to subscribed webhooks as
``policy.load_failed``: stored by the milter in Postgres, delivered by the
admin service's worker to a local HTTPS receiver. (The admin API refuses to
activate a revision that breaks the set, so that path is covered against
Postgres in tests/milter/test_reload.py.)
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.app import create_app
from postwarden_admin_api.settings import ServiceSettings
from postwarden_admin_api.webhooks import WEBHOOK_OPTIONS
from postwarden_admin_api.webhooks.signing import verify
from postwarden_admin_api.webhooks.ssrf import IPAddress
from postwarden_policies import load_policy_set_from_sources
from postwarden_store import connect
from postwarden_store.policies import fetch_active_sources
from tests.fixtures.adminapp import (  # noqa: F401 - fixtures
    AiohttpClient,
    admin_key,
    admin_settings,
    bearer,
    make_admin_settings,
    mint_key,
)
from tests.fixtures.milterproc import MilterProcess
from tests.fixtures.postfix import SmtpResult, has_header, send_message, wait_for
from tests.webhooks.receiver import Receiver, make_tls
from tests.webhooks.receiver import wait_for as wait_async
from tests.webhooks.support import generate_secret, worker_options

from . import messages
from .conftest import MailSystem, mail_system_for
from .messages import RECIPIENT, SENDER, Sample

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

SUBJECT = "Forbidden fruit"
PERMISSIVE = """\
version: 1
name: e2e-subjects
rules:
  - name: e2e-subject-seen
    when:
      subject: "(?i)forbidden fruit"
    then:
      add_header:
        X-Subject-Check: seen
"""
STRICT = """\
version: 1
name: e2e-subjects
rules:
  - name: e2e-subject-blocked
    when:
      subject: "(?i)forbidden fruit"
    then: reject
    code: "550 5.7.1"
    message: Subject not accepted here
"""
RECEIVER_NAME = "hooks.example.test"
RELOAD_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def system(database_url: str) -> Iterator[MailSystem]:
    """The milter in database mode (no policy directory) behind a private Postfix."""
    with mail_system_for(database_url, env={"POSTWARDEN_POLICY_DIR": ""}) as started:
        yield started


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver("127.0.0.1", make_tls([RECEIVER_NAME]))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def api(
    aiohttp_client: AiohttpClient,
    admin_settings: ServiceSettings,  # noqa: F811 - the imported fixture
    receiver: Receiver,
) -> TestClient[Any, Any]:
    """The admin service; its webhook worker reaches the local receiver (loopback allowed)."""

    async def lookup(host: str, port: int) -> list[IPAddress]:
        if host != RECEIVER_NAME:
            raise OSError("name does not resolve")
        return [ipaddress.ip_address("127.0.0.1")]

    app = create_app(admin_settings)
    app[WEBHOOK_OPTIONS] = worker_options(receiver.tls, lookup)  # type: ignore[arg-type]
    return await aiohttp_client(app)


async def _upload(api: TestClient[Any, Any], key: str, source: str) -> dict[str, Any]:
    response = await api.post("/api/v1/policies", data=source, headers={
        **bearer(key), "Content-Type": "application/yaml"})
    body: dict[str, Any] = await response.json()
    assert response.status == 201, body
    return body


async def _active_set_hash(dsn: str) -> str:
    """The hash of the set the milter builds from the active revisions, computed the same way."""
    conn = await connect(dsn)
    try:
        return load_policy_set_from_sources(await fetch_active_sources(conn)).content_hash
    finally:
        await conn.close()


async def _post_and_wait_for(system: MailSystem, api: TestClient[Any, Any], key: str,
                             path: str) -> dict[str, Any]:
    """POST an activation or rollback, then wait (bounded) until the milter's log shows
    that it reloaded the new active set."""
    offset = len(system.milter.log())
    response = await api.post(path, headers=bearer(key))
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    content_hash = await _active_set_hash(_dsn(system))
    expected = rf"policy set reloaded \(notify\): \w+ -> {content_hash[:12]}"
    await asyncio.to_thread(
        wait_for, lambda: re.search(expected, system.milter.log()[offset:]), RELOAD_TIMEOUT)
    return body


def _dsn(system: MailSystem) -> str:
    assert system.database_url is not None
    return system.database_url


async def _send(system: MailSystem, sample: Sample) -> SmtpResult:
    return await asyncio.to_thread(send_message, system.postfix.port, sample.data, SENDER,
                                   [RECIPIENT])


async def _delivered_with_check(system: MailSystem) -> None:
    sample = messages.clean(SUBJECT)
    result = await _send(system, sample)
    assert result.accepted, result
    await asyncio.to_thread(system.capture.wait_for_message, lambda m: (
        has_header("Message-ID", sample.message_id)(m) and has_header("X-Subject-Check", "seen")(m)
    ))


async def test_activation_and_rollback_reach_the_running_milter(
    system: MailSystem, api: TestClient[Any, Any], admin_key: str  # noqa: F811
) -> None:
    permissive = await _upload(api, admin_key, PERMISSIVE)
    await _post_and_wait_for(system, api, admin_key,
                             f"/api/v1/revisions/{permissive['id']}/activate")
    await _delivered_with_check(system)

    strict = await _upload(api, admin_key, STRICT)
    await _post_and_wait_for(system, api, admin_key,
                             f"/api/v1/revisions/{strict['id']}/activate")
    sample = messages.clean(SUBJECT)
    result = await _send(system, sample)
    assert (result.code, result.stage) == (550, "data"), result
    assert result.text.startswith("5.7.1 Subject not accepted here"), result
    row = await asyncio.to_thread(system.audit_row, sample.message_id)
    assert row["action"] == "reject"
    assert list(row["rules"]) == ["e2e-subject-blocked"]
    assert row["policy_hash"] == await _active_set_hash(_dsn(system))

    rolled_back = await _post_and_wait_for(system, api, admin_key,
                                           "/api/v1/policies/e2e-subjects/rollback")
    assert rolled_back["id"] == permissive["id"]
    await _delivered_with_check(system)


async def test_a_broken_policy_file_reaches_subscribed_webhooks(
    database_url: str, api: TestClient[Any, Any], admin_key: str,  # noqa: F811
    receiver: Receiver, tmp_path: Path,
) -> None:
    """A milter deploying YAML from a directory, with a database for audit and events."""
    secret = generate_secret()
    response = await api.post("/api/v1/webhooks", headers=bearer(admin_key), json={
        "name": "ops-policy", "url": f"https://{RECEIVER_NAME}:{receiver.port}/hook",
        "kind": "webhook", "events": ["policy.load_failed"], "secret": secret,
    })
    assert response.status == 201, await response.text()
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "main.yaml").write_text(PERMISSIVE)
    broken = policy_dir / "broken.yaml"
    milter = MilterProcess(policy_dir, database_url, env={
        "POSTWARDEN_INSTANCE_NAME": "e2e-files", "POSTWARDEN_POLICY_POLL_SECONDS": "0.2"})
    try:
        await asyncio.to_thread(milter.start)
        broken.write_text("version: 1\nname: broken\nrules: [oops\n")
        assert await wait_async(lambda: len(receiver.delivered()) == 1, seconds=30), milter.log()
        milter.reload()  # SIGHUP re-reads the same broken file: refused and reported again
        assert await wait_async(lambda: len(receiver.delivered()) == 2, seconds=30), milter.log()
        assert "policy reload (signal) refused" in milter.log()
    finally:
        await asyncio.to_thread(milter.destroy)

    events = []
    for delivery in receiver.delivered():
        verify(secret, delivery.headers, delivery.body)
        events.append(json.loads(delivery.body))
    error = (f"{broken}:3:8: YAML syntax error: this [ is not closed before the file ends "
             "(close it with ])")
    assert [(event["type"], event["data"]) for event in events] == [
        ("policy.load_failed", {"instance": "e2e-files", "trigger": trigger,
                                "sources": [str(broken)], "error": error})
        for trigger in ("file change", "signal")
    ]
