"""Report-mode policies: their limits are checked and recorded, and their rules run
even when an enforced limit refuses the message; nothing of theirs is applied."""

from __future__ import annotations

from postwarden_policies import Envelope, evaluate_message, load_policy_set_from_sources

RAW = ("From: a@elsewhere.test\r\nSubject: s\r\n\r\n" + "x" * 500 + "\r\n").encode()
ENVELOPE = Envelope("a@elsewhere.test", ("b@example.com", "c@example.com"))
TRIAL = """version: 1
name: trial
mode: report
limits: {max_message_bytes: 100, max_recipients: 1, max_attachment_bytes: 10}
rules:
  - name: any-mail
    when: {size_over: 50}
    then: reject
"""


def test_a_report_mode_policy_records_its_limits_and_changes_nothing() -> None:
    policy_set = load_policy_set_from_sources([("trial.yaml", TRIAL)])
    verdict = evaluate_message(policy_set, RAW, ENVELOPE)
    assert verdict.action.value == "accept"
    assert verdict.rules == (
        "report:limit:max_message_bytes",
        "report:limit:max_recipients",
        "report:any-mail",
    )
    assert verdict.report_only is True
    assert verdict.edits == ()  # no recipient removed
    # The milter's MAIL/RCPT checks read the enforced limits only.
    assert policy_set.limits.max_message_bytes is None
    assert policy_set.limits.max_recipients is None


def test_report_mode_rules_run_when_an_enforced_limit_refuses() -> None:
    policy_set = load_policy_set_from_sources([
        ("a.yaml", "version: 1\nname: enf\nlimits: {max_message_bytes: 100}\n"),
        ("b.yaml", TRIAL),
    ])
    verdict = evaluate_message(policy_set, RAW, ENVELOPE)
    assert verdict.action.value == "reject"
    assert verdict.smtp_reply is not None and verdict.smtp_reply.code == "552"
    assert verdict.rules == (
        "limit:max_message_bytes",
        "report:limit:max_message_bytes",
        "report:limit:max_recipients",
        "report:any-mail",
    )
    assert verdict.report_only is True


def test_a_report_mode_structure_limit_is_recorded_only_where_it_is_set() -> None:
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\n{n}\r\n" for n in range(5))
    raw = (
        'From: a@elsewhere.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; '
        f'boundary="b"\r\n\r\n{parts}--b--\r\n'
    ).encode()
    policy_set = load_policy_set_from_sources([
        ("a.yaml", "version: 1\nname: enf\n"
                   "limits: {max_mime_parts: 3, on_structure_limit: quarantine}\n"),
        ("b.yaml", "version: 1\nname: r1\nmode: report\nlimits: {max_mime_parts: 4}\n"),
        ("c.yaml", "version: 1\nname: r2\nmode: report\nlimits: {max_mime_depth: 4}\n"),
    ])
    verdict = evaluate_message(policy_set, raw, Envelope("a@elsewhere.test", ("b@example.com",)))
    assert verdict.action.value == "quarantine"
    assert verdict.rules == ("limit:max_mime_parts", "report:limit:max_mime_parts")


def test_a_report_mode_trial_of_a_looser_structure_limit_records_only_what_is_past_it() -> None:
    # The parser stops at the enforced max_mime_parts: its flag says "past 3", not "past
    # 10", so a trial raising the limit was recorded as past for every message refused.
    def message(count: int) -> bytes:
        parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\n{n}\r\n" for n in range(count))
        return ('From: a@elsewhere.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; '
                f'boundary="b"\r\n\r\n{parts}--b--\r\n').encode()

    policy_set = load_policy_set_from_sources([
        ("a.yaml", "version: 1\nname: enf\nlimits: {max_mime_parts: 3}\n"),
        ("b.yaml", "version: 1\nname: trial\nmode: report\nlimits: {max_mime_parts: 10}\n"),
    ])
    envelope = Envelope("a@elsewhere.test", ("b@example.com",))
    within = evaluate_message(policy_set, message(5), envelope)
    assert within.action.value == "reject"
    assert within.rules == ("limit:max_mime_parts",)
    assert within.report_only is False
    past = evaluate_message(policy_set, message(12), envelope)
    assert past.rules == ("limit:max_mime_parts", "report:limit:max_mime_parts")
    assert past.flags == within.flags  # the enforced verdict reads the message as before
