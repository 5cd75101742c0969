"""``signed_mail`` decides for strip rules too: with no policy sanitizing HTML, a signed
part a strip rule selects is held (the default ``skip``), not changed under its signature."""

from __future__ import annotations

from postwarden_policies import (
    Envelope,
    Quarantine,
    Verdict,
    evaluate_message,
    load_policy_set_from_sources,
    policy_schema,
)

STRIP_EXE = (
    "version: 1\nname: strip\nrules:\n  - name: s\n"
    "    when: {attachment: {filename: ['*.exe']}}\n    then: strip_attachment\n"
)
SIGNED = (
    b'Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary=s\r\n'
    b"\r\n--s\r\nContent-Type: application/octet-stream; name=a.exe\r\n\r\nMZ\r\n"
    b"--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--s--\r\n"
)


def _verdict(sanitize: str) -> Verdict:
    policy_set = load_policy_set_from_sources([("strip", STRIP_EXE + sanitize)])
    return evaluate_message(policy_set, SIGNED, Envelope())


def test_a_strip_in_a_signed_part_holds_when_no_policy_sanitizes_html() -> None:
    verdict = _verdict("")
    assert isinstance(verdict.decision, Quarantine)
    assert "signed part" in verdict.decision.reason
    # The hold queue's reader learns the setting that held it, and the other choice.
    assert "signed_mail: skip" in verdict.decision.reason
    assert "break the signature" in verdict.decision.reason
    assert verdict.changes == ()


def test_signed_mail_sanitize_lets_a_strip_change_a_signed_part() -> None:
    verdict = _verdict("sanitize: {signed_mail: sanitize}\n")
    assert [c.filename for c in verdict.changes] == ["a.exe"]


def test_with_no_policy_at_all_signed_parts_stay_intact() -> None:
    assert load_policy_set_from_sources([]).skip_signed is True


def test_the_schema_says_skip_holds_a_signed_part_that_would_change() -> None:
    # It said "never touched": an editor's hint an admin reads as delivered as it came.
    described = policy_schema()["$defs"]["sanitize"]["properties"]["signed_mail"]["description"]
    assert "holds the message" in described
    assert "signature breaks" in described
