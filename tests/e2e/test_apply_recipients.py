"""Recipients past max_recipients, deleted at end of message after a reload lowered the
limit once they were accepted, through a real Postfix: it deletes every recipient whose
RCPT TO address is byte for byte the one named (and keeps one of identical ones), so
the milter must name the very copies past the limit, and none that stays."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.postfix import has_header, wait_for

from . import messages
from .conftest import MailSystem, mail_system_for
from .messages import SENDER

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

POLICY = "version: 1\nname: limits\nlimits:\n  max_recipients: {limit}\n"
RELOADED = "policy set reloaded"


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = Path(tmp_path_factory.mktemp("policies"))
    (directory / "limits.yaml").write_text(POLICY.format(limit=10))
    return directory


@pytest.fixture(scope="module")
def system(database_url: str, policy_dir: Path) -> Iterator[MailSystem]:
    with mail_system_for(database_url, policy_dir=policy_dir,
                         env={"POSTWARDEN_POLICY_POLL_SECONDS": "0.2"}) as mail_system:
        yield mail_system


def _set_limit(system: MailSystem, policy_dir: Path, limit: int) -> None:
    """Write the new limit and wait until the milter runs it."""
    reloads = system.milter.log().count(RELOADED)
    (policy_dir / "limits.yaml").write_text(POLICY.format(limit=limit) + f"# {limit}\n")
    wait_for(lambda: system.milter.log().count(RELOADED) > reloads, timeout=20)


def _delivered_to(system: MailSystem, policy_dir: Path, recipients: list[str],
                  limit: int) -> tuple[str, ...]:
    """Send to ``recipients`` (all accepted), lowering max_recipients to ``limit`` between
    the last RCPT and DATA; the recipients the message reached."""
    sample = messages.clean()
    with smtplib.SMTP("127.0.0.1", system.postfix.port, timeout=60) as smtp:
        smtp.ehlo("client.postwarden.test")
        smtp.mail(SENDER)
        for recipient in recipients:
            assert smtp.rcpt(recipient)[0] == 250
        _set_limit(system, policy_dir, limit)
        try:
            assert smtp.data(sample.data)[0] == 250
        finally:
            _set_limit(system, policy_dir, 10)
    delivered = system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    return delivered.rcpt_tos


def test_the_copy_past_the_limit_goes_not_one_differing_in_case(
    system: MailSystem, policy_dir: Path,
) -> None:
    delivered = _delivered_to(system, policy_dir, ["Bob@example.net", "bob@example.net"], 1)
    assert delivered == ("Bob@example.net",)


def test_an_identical_copy_past_the_limit_does_not_take_the_kept_one_along(
    system: MailSystem, policy_dir: Path,
) -> None:
    recipients = ["bob@example.net", "carol@example.net", "bob@example.net", "dave@example.net"]
    delivered = _delivered_to(system, policy_dir, recipients, 2)
    assert sorted(delivered) == ["bob@example.net", "carol@example.net"]
