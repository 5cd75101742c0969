"""An outage in a few lines (.outages): said as a component first meets it, with the
reason; then at most once a minute while it lasts, with the failures not logged; then
once as it ends. Its whole course in a real service: tests/send_api/test_database_outage_log.py."""

from __future__ import annotations

import logging

import pytest

from postwarden_admin_api.outages import Outages
from postwarden_policies.occasional import INTERVAL

REFUSED = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == "postwarden_admin_api.outages"]
    caplog.clear()
    return lines


def test_an_outage_is_said_as_it_starts_once_a_minute_and_as_it_ends(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    clock = Clock()
    outages = Outages(clock=clock)
    outages.back("relay worker")  # no outage: nothing to say
    for _ in range(8):  # eight workers, a round each
        outages.failed("relay worker", REFUSED)
    assert _said(caplog) == [
        "relay worker: database unavailable (ConnectionRefusedError: Connect call failed "
        "('127.0.0.1', 5432)); said again at most once a minute until it is back"]
    clock.now += INTERVAL - 1
    outages.failed("relay worker", REFUSED)
    assert _said(caplog) == []
    clock.now += 1
    outages.failed("relay worker", REFUSED)
    assert _said(caplog) == [
        "relay worker: database still unavailable (ConnectionRefusedError: Connect call "
        "failed ('127.0.0.1', 5432)) after 60 s; failures: 9 in the last 60 s"]
    outages.failed("relay worker", REFUSED)
    clock.now += 5
    outages.back("relay worker")
    outages.back("relay worker")  # another worker's round: said once
    assert _said(caplog) == [
        "relay worker: database reachable again after 65 s (1 failure(s) not logged)"]
    outages.failed("relay worker", REFUSED)  # a new outage: said at once
    assert len(_said(caplog)) == 1


def test_each_component_says_its_own_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    outages = Outages(clock=Clock())
    outages.failed("relay worker", REFUSED)
    outages.failed("rate limiter", REFUSED)
    outages.back("relay worker")
    assert [line.split(":")[0] for line in _said(caplog)] == [
        "relay worker", "rate limiter", "relay worker"]
