"""An MTA that does not offer every milter action a verdict may need is refused at
negotiation, by the real milter process: accepted, its connection would meet a
quarantine verdict it cannot carry out after other edits went out, and with
fail_action=accept the message held for review would be delivered. Postfix then applies
milter_default_action to all its mail: each refusal is counted (errors, kind negotiate)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest

from tests.fixtures.milterproc import MilterProcess, running_milter
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import wait_until
from tests.fixtures.scrape import scrape
from tests.milter.milterclient import ALL_ACTIONS, MilterClient

POLICY = """\
version: 1
name: negotiation
rules:
  - name: hold
    when:
      subject: '\\[hold-me\\]'
    then: quarantine
    message: held for review
"""


class Client(MilterClient):
    def held_message(self) -> bytes:
        """A message the policy quarantines: the command of the final answer."""
        self.macros(b"M", i="Q1")
        self.step(b"M", b"<alice@example.org>\0")
        self.step(b"R", b"<bob@example.net>\0")
        self.step(b"L", b"Subject\0 [hold-me] please\0")
        self.step(b"N")
        return self.finish("Q1")[0]


@pytest.fixture(scope="module")
def milter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilterProcess]:
    policy_dir = tmp_path_factory.mktemp("policies")
    (policy_dir / "negotiation.yaml").write_text(POLICY)
    env = {"POSTWARDEN_FAIL_ACTION": "accept",
           "POSTWARDEN_METRICS_LISTEN": f"127.0.0.1:{free_port()}"}
    with running_milter(Path(policy_dir), env=env) as process:
        yield process


def refusals(milter: MilterProcess) -> float:
    port = int(milter.env["POSTWARDEN_METRICS_LISTEN"].rpartition(":")[2])
    return scrape(port).get(("postwarden_errors_total", frozenset({("kind", "negotiate")})), 0.0)


def test_every_action_offered_quarantines(milter: MilterProcess) -> None:
    client = Client(milter.env["POSTWARDEN_MILTER_SOCKET"])
    try:
        client.open(ALL_ACTIONS)
        assert client.held_message() == b"c"  # held by 'q', not accepted
    finally:
        client.close()
    assert refusals(milter) == 0


@pytest.mark.parametrize("name", ["ADDHDRS", "CHGHDRS", "MODBODY", "DELRCPT", "QUARANTINE"])
def test_an_action_not_offered_refuses_the_connection(milter: MilterProcess, name: str) -> None:
    refused = refusals(milter)
    client = Client(milter.env["POSTWARDEN_MILTER_SOCKET"])
    try:
        with pytest.raises(EOFError):
            client.open(ALL_ACTIONS & ~getattr(Milter, name))
            answer = client.held_message()
            # Only reached without the refusal: what the message would have met.
            pytest.fail(f"accepted without {name}; the held message was answered {answer!r}")
    finally:
        client.close()
    assert wait_until(lambda: f"milter actions {name}: refusing" in milter.log(), timeout=10)
    assert refusals(milter) == refused + 1
