"""A port free_port picked that another program took meanwhile (a second test run at
the same time) fails the milter fixture with the milter's reason: its connection
check took the other program's listener for the milter, which had exited."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.fixtures.milterproc import MilterProcess, running_milter
from tests.fixtures.ports import free_port

POLICIES = Path(__file__).resolve().parent.parent / "policies" / "examples"


def test_milter_on_a_port_taken_meanwhile_says_so() -> None:
    with socket.create_server(("127.0.0.1", free_port())) as taken:
        milter = MilterProcess(POLICIES, port=taken.getsockname()[1])
        try:
            with pytest.raises(RuntimeError, match="Address already in use"):
                milter.start()
        finally:
            milter.destroy()


def test_milter_on_a_free_port_starts() -> None:
    with running_milter(POLICIES) as milter:
        socket.create_connection(("127.0.0.1", milter.port), timeout=5).close()
        assert milter.running()
