"""A Subject prefix next to a rule that removes the Subject, through a real Postfix and
the real milter: the prefix goes on the Subject the removal leaves (a rule's added one,
or a new one), never brings the removed text back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.postfix import has_header, send_message

from . import messages
from .conftest import MailSystem, mail_system_for
from .messages import RECIPIENT, SENDER, Delivered

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

POLICY = """\
version: 1
name: review-subject
rules:
  - name: tag
    when:
      subject: '\\[tag-me\\]'
    then:
      subject_prefix: "[EXT] "
  - name: hide
    when:
      subject: '\\[hide-me\\]'
    then:
      remove_header: [Subject]
  - name: redact
    when:
      subject: '\\[redact-me\\]'
    then:
      remove_header: [Subject]
      add_header: {Subject: Redacted}
"""


@pytest.fixture(scope="module")
def system(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSystem]:
    policy_dir = tmp_path_factory.mktemp("policies")
    (policy_dir / "review.yaml").write_text(POLICY)
    with mail_system_for(database_url, policy_dir=Path(policy_dir)) as mail_system:
        yield mail_system


def _subjects(system: MailSystem, subject: str) -> list[bytes]:
    """The delivered message's Subject fields, raw."""
    sample = messages.clean(subject)
    result = send_message(system.postfix.port, sample.data, SENDER, [RECIPIENT])
    assert result.accepted, result
    delivered = system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    got = Delivered.parse(delivered.data)
    return [field for field, name in zip(got.fields, got.names(), strict=True)
            if name == "subject"]


def test_prefix_on_a_removed_subject_adds_only_the_prefix(system: MailSystem) -> None:
    assert _subjects(system, "[hide-me] [tag-me] secret plans") == [b"Subject: [EXT]\r\n"]


def test_prefix_goes_on_the_subject_a_rule_added_after_removing(system: MailSystem) -> None:
    assert _subjects(system, "[redact-me] [tag-me] secret plans") == [
        b"Subject: [EXT] Redacted\r\n"
    ]


def test_prefix_alone_still_changes_the_senders_subject(system: MailSystem) -> None:
    assert _subjects(system, "[tag-me] hello") == [b"Subject: [EXT] [tag-me] hello\r\n"]
