"""max_recipients through a real Postfix.

Recipients past it, deleted at end of message after a reload lowered the limit once
they were accepted: Postfix deletes every recipient whose RCPT TO address, unquoted, is
byte for byte the one named (and keeps one of identical ones), so the milter must name the very
copies past the limit, and none that stays. And the limit counts the recipients
Postfix's cleanup keeps, not the RCPT TO commands: a client repeating one (in any case)
is not refused before the limit (tests/milter/test_repeated_recipients.py has the pairs
Postfix keeps once or twice)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.postfix import has_header, wait_for
from tests.test_contrib_postfix import MAIN_CF, main_cf

from . import messages
from .conftest import MailSystem, mail_system_for
from .messages import SENDER

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]

POLICY = "version: 1\nname: limits\nlimits:\n  max_recipients: {limit}\n"
RELOADED = "policy set reloaded"
# What contrib/postfix/main.cf.snippet has Postfix tell the milter of its smtputf8_enable.
SMTPUTF8_MACRO = {name: main_cf(MAIN_CF.read_text())[name]
                  for name in ("milter_mail_macros", "milter_macro_defaults")}


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


@pytest.mark.parametrize("recipients", [
    ["bob@example.net", '"bob"@example.net'],
    ['"bob"@example.net', "bob@example.net"],
], ids=["quoted-past-the-limit", "plain-past-the-limit"])
def test_a_copy_quoted_otherwise_is_not_deleted_with_the_kept_one(
    system: MailSystem, policy_dir: Path, recipients: list[str],
) -> None:
    # Two recipients to Postfix (its made-up ORCPT keeps the quoting), but one address to
    # delrcpt, which Postfix unquotes before comparing: naming the copy past the limit
    # deleted the kept one too, and the message (250) went to nobody. Both go out instead.
    delivered = _delivered_to(system, policy_dir, recipients, 1)
    assert sorted(delivered) == ["bob@example.net", "bob@example.net"]


def test_a_source_routed_recipient_past_the_limit_goes(
    system: MailSystem, policy_dir: Path,
) -> None:
    # Postfix holds it without its route: named with it, delrcpt deleted nothing and the
    # message went to one recipient past the limit.
    recipients = ["bob@example.net", "@r.test:carol@example.net"]
    assert _delivered_to(system, policy_dir, recipients, 1) == ("bob@example.net",)


Given = tuple[str, tuple[str, ...]]  # RCPT TO address and its ESMTP parameters


@pytest.fixture
def limit_of_3(system: MailSystem, policy_dir: Path) -> Iterator[None]:
    _set_limit(system, policy_dir, 3)
    yield
    _set_limit(system, policy_dir, 10)


def _send(system: MailSystem, given: list[Given],
          declare: bool = True) -> tuple[list[int], tuple[str, ...]]:
    """The reply code to each RCPT TO, and the recipients the message reached (with
    SMTPUTF8 when an address is not ASCII, if ``declare``)."""
    sample = messages.clean()
    utf8 = not all(address.isascii() for address, _ in given)
    with smtplib.SMTP("127.0.0.1", system.postfix.port, timeout=60) as smtp:
        smtp.ehlo("client.postwarden.test")
        if utf8:
            smtp.command_encoding = "utf-8"
        smtp.mail(SENDER, options=["SMTPUTF8"] if utf8 and declare else [])
        codes = [smtp.rcpt(address, options=list(params))[0] for address, params in given]
        assert smtp.data(sample.data)[0] == 250
    delivered = system.capture.wait_for_message(has_header("Message-ID", sample.message_id))
    return codes, delivered.rcpt_tos


@pytest.mark.usefixtures("limit_of_3")
def test_a_repeated_recipient_is_not_counted_again(system: MailSystem) -> None:
    given: list[Given] = [("bob@example.net", ()), ("Bob@example.net", ()),
                          ("bob@EXAMPLE.NET", ()), ("carol@example.net", ()),
                          ("dave@example.net", ()), ("erin@example.net", ())]
    codes, delivered = _send(system, given)
    assert codes == [250, 250, 250, 250, 250, 452]
    assert sorted(delivered) == ["bob@example.net", "carol@example.net", "dave@example.net"]


@pytest.mark.usefixtures("limit_of_3")
def test_a_recipient_repeated_in_another_unicode_case_is_not_counted_again(
    system: MailSystem,
) -> None:
    # Postfix with smtputf8_enable (its default) folds case as Unicode does: BØB is bøb.
    given: list[Given] = [("bøb@example.net", ()), ("BØB@example.net", ()),
                          ("carol@example.net", ()), ("dave@example.net", ())]
    codes, delivered = _send(system, given)
    assert codes == [250, 250, 250, 250]
    assert sorted(delivered) == ["bøb@example.net", "carol@example.net", "dave@example.net"]


def test_without_smtputf8_a_recipient_in_another_unicode_case_counts_as_the_macro_says(
    database_url: str, tmp_path: Path,
) -> None:
    # Postfix (strict_smtputf8 off, its default) takes JÖRG@ without SMTPUTF8, and with
    # smtputf8_enable keeps one of JÖRG@ and jörg@: the milter counted two and refused
    # dave past the limit of 3. The snippet's {smtputf8_enable} macro tells it.
    (tmp_path / "limits.yaml").write_text(POLICY.format(limit=3))
    given: list[Given] = [("j\u00f6rg@example.net", ()), ("J\u00d6RG@example.net", ()),
                          ("carol@example.net", ()), ("dave@example.net", ())]
    with mail_system_for(database_url, policy_dir=tmp_path, main=SMTPUTF8_MACRO) as system:
        codes, delivered = _send(system, given, declare=False)
    assert codes == [250, 250, 250, 250]
    assert sorted(delivered) == ["carol@example.net", "dave@example.net",
                                 "j\u00f6rg@example.net"]


@pytest.mark.usefixtures("limit_of_3")
def test_one_address_postfix_keeps_twice_counts_twice(system: MailSystem) -> None:
    # Other DSN parameters: cleanup's duplicate filter keeps both, and both go out.
    given: list[Given] = [("bob@example.net", ()), ("bob@example.net", ("NOTIFY=NEVER",)),
                          ("carol@example.net", ()), ("dave@example.net", ())]
    codes, delivered = _send(system, given)
    assert codes == [250, 250, 250, 452]
    assert sorted(delivered) == ["bob@example.net", "bob@example.net", "carol@example.net"]


@pytest.mark.usefixtures("limit_of_3")
def test_a_lowered_limit_deletes_the_distinct_recipients_past_it(
    system: MailSystem, policy_dir: Path,
) -> None:
    recipients = ["bob@example.net", "carol@example.net", "Bob@example.net",
                  "bob@example.net", "dave@example.net", "carol@example.net"]
    delivered = _delivered_to(system, policy_dir, recipients, 2)
    assert sorted(delivered) == ["bob@example.net", "carol@example.net"]
