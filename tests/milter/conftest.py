"""Drive the milter's callbacks without an MTA, through pymilter's TestCtx."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import Milter
import pytest
from Milter.testctx import TestCtx

from postwarden_milter.duplicates import DuplicateDetector
from postwarden_milter.libmilter import PostwardenMilter
from postwarden_milter.loopthread import LoopThread
from postwarden_milter.metrics import Metrics
from postwarden_milter.reload import PolicyHolder
from postwarden_milter.services import Services
from postwarden_milter.session import Slots
from postwarden_milter.settings import load_settings
from postwarden_policies import AuditEvent, load_policy_set_from_sources

POLICY = """\
version: 1
name: test
limits:
  max_message_bytes: 20000
  max_recipients: 3
rules:
  - name: no-exe
    when:
      attachment:
        filename: ["*.exe"]
    then: reject
  - name: hold
    when:
      subject: "(?i)hold me"
    then: quarantine
    message: held for review
  - name: tag
    when:
      subject: "(?i)tag me"
    then:
      add_header:
        X-Tagged: "yes"
  - name: redelivery
    when:
      duplicate: true
    then:
      add_header:
        X-Redelivered: "yes"
"""


class AuditSink:
    """Collects events as the pipeline's queue would receive them."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.refusing_mail = False

    def submit(self, event: AuditEvent, *, refusable: bool = False) -> bool:
        self.events.append(event)
        return True


class Ctx(TestCtx):  # type: ignore[misc]
    """TestCtx that records header edits and quarantine (TestCtx lacks both)."""

    def __init__(self) -> None:
        super().__init__()
        self.header_edits: list[tuple[Any, ...]] = []
        self.quarantined: str | None = None

    def addheader(self, field: str, value: str, idx: int) -> None:
        self.header_edits.append(("add", field, value))

    def chgheader(self, field: str, idx: int, value: str) -> None:
        self.header_edits.append(("change", field, idx, value))

    def quarantine(self, reason: str) -> None:
        self.quarantined = reason

    def getsymval(self, name: str) -> str | None:
        if self._stage is None:  # TestCtx compares None >= 0 outside its staged callbacks
            value: str | None = self._macros.get(name)
            return value
        return super().getsymval(name)  # type: ignore[no-any-return]

    def _helo(self, helo: str) -> int:
        # TestCtx closes the connection on anything but CONTINUE; hello is no-reply here.
        self._stage = Milter.M_HELO
        rc: int = self._priv.hello(helo)
        self._stage = None
        return rc

    def _feed_body(self, bfp: io.BytesIO) -> int:
        # TestCtx stops at the first answer other than CONTINUE; body is no-reply here.
        while chunk := bfp.read(8192):
            rc: int = self._priv.body(chunk)
            if rc not in (Milter.CONTINUE, Milter.NOREPLY):
                return rc
        return Milter.CONTINUE

    def send(self, raw: bytes, sender: str = "alice@example.org",
             recipients: tuple[str, ...] = ("bob@example.net",)) -> int:
        """One transaction, the way libmilter delivers it (header values with leading space)."""
        rc: int = self._envfrom(f"<{sender}>")
        if rc != Milter.CONTINUE:
            return rc
        for rcpt in recipients:
            rc = self._envrcpt(f"<{rcpt}>")
            if rc not in (Milter.CONTINUE, Milter.TEMPFAIL):
                return rc
        rc = self._data()
        if rc not in (Milter.CONTINUE, Milter.NOREPLY):
            return rc
        head, _, body = raw.partition(b"\r\n\r\n")
        for line in head.replace(b"\r\n ", b"\n ").replace(b"\r\n\t", b"\n\t").split(b"\r\n"):
            name, _, value = line.partition(b":")
            rc = self._header(name.decode(), value.decode("ascii", "surrogateescape"))
            if rc not in (Milter.CONTINUE, Milter.NOREPLY):
                return rc
        rc = self._eoh()
        if rc not in (Milter.CONTINUE, Milter.NOREPLY):
            return rc
        rc = self._feed_body(io.BytesIO(body))
        if rc != Milter.CONTINUE:
            return rc
        rc = self._eom()
        return rc

    @property
    def replaced_body(self) -> bytes | None:
        return self._body.getvalue() if self._bodyreplaced else None


@dataclasses.dataclass
class Harness:
    services: Services
    audit: AuditSink
    metrics: Metrics

    def connect(self, queue_id: str = "4QTEST1", ip: str = "192.0.2.10") -> Ctx:
        ctx = Ctx()
        ctx._setsymval("i", queue_id)
        rc = ctx._connect(host="client.example", helo="helo.example", ip=ip)
        assert rc in (Milter.CONTINUE, Milter.NOREPLY), rc
        return ctx

    def use(self, **services: Any) -> None:
        """Replace shared services (slots, workers, ...) for the next connections."""
        self.services = dataclasses.replace(self.services, **services)
        PostwardenMilter.services = self.services

    def configure(self, **settings: Any) -> None:
        self.use(settings=dataclasses.replace(self.services.settings, **settings))


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    settings = load_settings(None, {
        "POSTWARDEN_POLICY_DIR": str(policy_dir), "POSTWARDEN_SPOOL_DIR": str(tmp_path / "spool"),
        "POSTWARDEN_INSTANCE_NAME": "mx-test", "POSTWARDEN_BODY_MEMORY_THRESHOLD": "1024",
    })
    metrics = Metrics()
    audit = AuditSink()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as workers:
        services = Services(
            settings=settings,
            policies=PolicyHolder(load_policy_set_from_sources([("test.yaml", POLICY)])),
            audit=audit, metrics=metrics, duplicates=DuplicateDetector(600),
            slots=Slots(settings.max_concurrency),
            workers=workers,
        )
        PostwardenMilter.services = services
        Milter.factory = PostwardenMilter
        yield Harness(services, audit, metrics)


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    """An asyncio loop on a thread of its own, as the milter's reloader runs on."""
    loop = LoopThread()
    loop.start()
    yield loop
    loop.stop()
