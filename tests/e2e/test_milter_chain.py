"""postwarden with another milter after it in Postfix's chain, where the docs put a DKIM
signer: what that milter decides after postwarden's end of message, postwarden never
learns (Postfix tells an earlier milter nothing of it, and libmilter calls no abort after
an end of message), so its audit row keeps its own verdict, and a copy the later milter
tempfailed counts as let through: the sender's retry is `duplicate: true`
(contrib/postfix/README.md, docs/policy-language.md say so). Nor does it learn of a
recipient that milter refused at RCPT, which the row still lists."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.othermilter import (
    REFUSED_AT_RCPT,
    REPLY,
    TEMPFAIL_ONCE,
    running_other_milter,
)
from tests.fixtures.postfix import has_header, send_message

from . import messages
from .conftest import MailSystem, mail_system_for
from .messages import RECIPIENT, SENDER

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

POLICY = """\
version: 1
name: chain
rules:
  - name: seen-before
    when: {duplicate: true}
    then: reject
    code: "550 5.7.1"
    message: Already delivered
"""


@pytest.fixture(scope="module")
def system(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSystem]:
    policy_dir: Path = tmp_path_factory.mktemp("policies")
    (policy_dir / "main.yaml").write_text(POLICY)
    with running_other_milter() as other, \
            mail_system_for(database_url, policy_dir, after=other) as mail_system:
        yield mail_system


def test_a_retry_of_a_copy_a_later_milter_tempfailed_counts_as_a_duplicate(
        system: MailSystem) -> None:
    sample = messages.clean(subject=f"{TEMPFAIL_ONCE} invoice")
    first = send_message(system.postfix.port, sample.data, SENDER, [RECIPIENT])
    assert (str(first.code), first.text) == (REPLY[0], f"{REPLY[1]} {REPLY[2]}")
    # postwarden's own verdict: the later milter's 451 reached it by no callback.
    assert system.audit_row(sample.message_id)["action"] == "accept"

    retry = send_message(system.postfix.port, sample.data, SENDER, [RECIPIENT])
    assert (retry.code, retry.text) == (550, "5.7.1 Already delivered")
    assert not system.capture.messages


def test_a_recipient_a_later_milter_refused_at_rcpt_stays_in_the_audit_row(
        system: MailSystem) -> None:
    # Postfix asks the milters in turn, stops at the first that refuses, and tells the
    # earlier ones nothing of it; at end of message no macro lists the recipients it
    # kept. The README (the audit row) and contrib/postfix/README.md say so.
    sample = messages.clean(subject="to a recipient the later milter refuses")
    result = send_message(system.postfix.port, sample.data, SENDER, [RECIPIENT, REFUSED_AT_RCPT])
    assert result.code == 250
    delivered = system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    assert delivered.rcpt_tos == (RECIPIENT,)
    row = system.audit_row(sample.message_id)
    assert (row["action"], list(row["recipients"])) == ("accept", [RECIPIENT, REFUSED_AT_RCPT])
