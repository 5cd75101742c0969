"""Red-team evasions: messages that mail readers read differently than the parser did.

Each runs through parse_message and evaluate with the example inbound policy:
the executable, script name or HTML must be seen as a mail reader shows it, and
the verdict must not be a plain accept (malformed mail is at least tagged).
"""

from __future__ import annotations

from pathlib import Path

from postwarden_policies import (
    Envelope,
    MessageFacts,
    Verdict,
    evaluate,
    load_policy_set,
    parse_message,
    transfer,
)

INBOUND = load_policy_set(
    [Path(__file__).resolve().parents[2] / "policies" / "examples" / "inbound-default.yaml"]
)
ENV = Envelope("someone@elsewhere.test", ("alice@example.com",), "198.51.100.7")
HEAD = b"From: a@evil.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
EXE_B64 = b"TVqQAAMAAAAEAAAA"  # MZ...


def _run(raw: bytes) -> tuple[MessageFacts, Verdict]:
    facts = parse_message(
        raw, ENV, max_parts=INBOUND.max_mime_parts, max_depth=INBOUND.max_mime_depth
    )
    return facts, evaluate(INBOUND, facts)


def _exe_part(body: bytes, cte: bytes = b"base64") -> bytes:
    return (
        HEAD + b'Content-Type: application/octet-stream; name="setup.com"\r\n'
        b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + body + b"\r\n"
    )


def test_whitespace_before_base64_does_not_hide_an_executable() -> None:
    facts, verdict = _run(_exe_part(b" " * 400 + b"\r\n" + EXE_B64))
    assert facts.parts[0].detected_type == "application/x-dosexec"
    assert verdict.rules[:1] == ("block-executables",)


def test_soft_breaks_before_quoted_printable_do_not_hide_an_executable() -> None:
    body = b"=\r\n" * 200 + b"MZ=90=00=03" + b"=00" * 60
    facts, verdict = _run(_exe_part(body, b"quoted-printable"))
    assert facts.parts[0].detected_type == "application/x-dosexec"
    assert verdict.rules[:1] == ("block-executables",)


def test_padding_past_the_scan_bound_is_malformed_not_clean() -> None:
    facts, verdict = _run(_exe_part(b" " * transfer.HEAD_SCAN + b"\r\n" + EXE_B64))
    assert {"padded_encoding", "malformed"} <= facts.flags
    assert verdict.rules[:1] == ("hold-broken-mime-with-attachments",)
