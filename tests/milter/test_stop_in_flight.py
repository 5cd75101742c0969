"""A stop hangs the connections up only once the callback that ended the last transaction
has returned, and a tick after that: libmilter writes its reply only then, and the
transaction counts as ended already inside it (an accepted message hung up before its
reply is tempfailed by the MTA, although audited as accepted and recorded as delivered)."""

from __future__ import annotations

import concurrent.futures
import threading

import Milter

from postwarden_milter.duplicates import DuplicateDetector
from postwarden_milter.session import Settling
from tests.milter.conftest import Harness

MESSAGE = (b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hi\r\n"
           b"Message-ID: <in-flight@example.org>\r\n\r\nHello.\r\n")
WAIT = 10.0  # bounds every wait for the other thread


class Gate(DuplicateDetector):
    """Holds eom in flight where it records the delivered message's key: after its
    transaction ended and its audit row went, before it returns its verdict."""

    def __init__(self) -> None:
        super().__init__(600)
        self.reached = threading.Event()
        self.opened = threading.Event()

    def record(self, *keys: bytes) -> None:
        self.reached.set()
        assert self.opened.wait(WAIT)
        super().record(*keys)


def test_a_stop_settles_only_a_tick_after_the_last_eom_returned(harness: Harness) -> None:
    gate = Gate()
    harness.use(duplicates=gate)
    services = harness.services
    settling = Settling(services.transactions, services.callbacks)  # as serve() asks
    ctx = harness.connect(queue_id="4QINFLIGHT")
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as mta:
        sent = mta.submit(ctx.send, MESSAGE)
        try:
            assert gate.reached.wait(WAIT)
            # The window: no transaction open, its row written, the reply not yet out.
            assert services.transactions.active == 0
            assert [event.action for event in harness.audit.events] == ["accept"]
            assert not any(settling.settled() for _tick in range(3))
            assert services.callbacks.active == 1
        finally:
            gate.opened.set()
        assert sent.result(WAIT) == Milter.CONTINUE
    assert services.callbacks.active == 0
    assert not settling.settled()  # the reply was just handed over: one more tick for it
    assert settling.settled()


def test_a_transaction_open_keeps_a_stop_from_settling(harness: Harness) -> None:
    services = harness.services
    settling = Settling(services.transactions, services.callbacks)
    ctx = harness.connect(queue_id="4QOPEN")
    assert ctx._envfrom("<alice@example.org>") == Milter.CONTINUE
    assert not any(settling.settled() for _tick in range(3))
    ctx._abort()
    assert [event.action for event in harness.audit.events] == ["aborted"]
    assert not settling.settled()
    assert settling.settled()
