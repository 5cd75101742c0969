"""bench/milter_throughput.py runs the example policies as mail from the Internet meets
them: smtp-source sends from loopback, which the examples count as internal."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.milter_throughput import RECIPIENT, SENDER, examples_from_outside

from bench import milter_throughput
from postwarden_policies import Action, Envelope, evaluate, load_policy_set, parse_message

FROM_LOOPBACK = Envelope(sender=SENDER, recipients=(RECIPIENT,), client_ip="127.0.0.1")
# An AWS access key id in a body: what the examples look for in mail from one of us.
WITH_KEY = (
    f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: keys\r\n\r\n"
    "AKIAABCDEFGHIJKLMNOP\r\n"
).encode()


def verdict(policy_dir: Path, message: bytes) -> tuple[Action, tuple[str, ...]]:
    result = evaluate(load_policy_set([policy_dir]), parse_message(message, FROM_LOOPBACK))
    return result.action, result.rules


def test_the_examples_read_loopback_mail_as_ours() -> None:
    assert verdict(milter_throughput.EXAMPLES, WITH_KEY) == (
        Action.REJECT, ("block-credentials",))


def test_the_bench_copy_reads_loopback_mail_as_from_outside(tmp_path: Path) -> None:
    copy = examples_from_outside(tmp_path)
    assert verdict(copy, WITH_KEY) == (Action.ACCEPT, ("tag-external",))
    newsletter = milter_throughput.html_60k().replace("\n", "\r\n").encode()
    assert verdict(copy, newsletter) == (Action.ACCEPT, ("tag-external",))


def test_examples_that_list_loopback_otherwise_stop_the_bench(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(milter_throughput, "LOOPBACK_INTERNAL", ', "127.0.0.0/8"')
    with pytest.raises(SystemExit, match="no longer end in"):
        examples_from_outside(tmp_path)
