"""Recipients past max_recipients: named to delrcpt as given (without a source route),
once, and not while a copy that reads the same stays (Postfix deletes every recipient
whose address, unquoted, is byte for byte the one named).
tests/e2e/test_apply_recipients.py shows what Postfix then delivers."""

from __future__ import annotations

import dataclasses

import pytest

from postwarden_milter.apply import apply_verdict
from postwarden_policies import Accept, DeleteRecipient, Verdict

from .test_apply import EDITS, Recorder


@pytest.mark.parametrize(("recipients", "deleted", "calls"), [
    pytest.param(("A@x.test", "a@x.test"), ("a@x.test",), ["<a@x.test>"], id="case-variant"),
    pytest.param(("a@x.test", "A@x.test"), ("A@x.test",), ["<A@x.test>"],
                 id="case-variant-other-way"),
    pytest.param(("a@x.test", "b@x.test", "a@x.test"), ("a@x.test",), [],
                 id="identical-copy-of-a-kept-one"),
    pytest.param(("a@x.test", "b@x.test", "b@x.test"), ("b@x.test", "b@x.test"), ["<b@x.test>"],
                 id="every-copy-deleted-named-once"),
    pytest.param(("a@x.test", "c@x.test", "b@x.test"), ("c@x.test", "b@x.test"),
                 ["<c@x.test>", "<b@x.test>"], id="in-order"),
    # Postfix compares the addresses unquoted, its source route dropped.
    pytest.param(("a@x.test", '"a"@x.test'), ('"a"@x.test',), [], id="quoted-copy-of-a-kept-one"),
    pytest.param(('"a"@x.test', "a@x.test"), ("a@x.test",), [], id="plain-copy-of-a-kept-one"),
    pytest.param(('"a b"@x.test', '"a\\ b"@x.test'), ('"a\\ b"@x.test',), [],
                 id="escaped-copy-of-a-kept-one"),
    pytest.param(("a@x.test", "@r.test:a@x.test"), ("@r.test:a@x.test",), [],
                 id="source-routed-copy-of-a-kept-one"),
    pytest.param(("a@x.test", '"b"@x.test'), ('"b"@x.test',), ['<"b"@x.test>'],
                 id="quoted-one-alone-named-as-given"),
    pytest.param(("a@x.test", "@r.test,@s.test:b@x.test"), ("@r.test,@s.test:b@x.test",),
                 ["<b@x.test>"], id="source-routed-one-alone-named-as-postfix-holds-it"),
])
def test_recipients_past_the_limit(recipients: tuple[str, ...], deleted: tuple[str, ...],
                                   calls: list[str]) -> None:
    actions = Recorder()
    verdict = Verdict(Accept(), edits=tuple(DeleteRecipient(a) for a in deleted))
    apply_verdict(actions, verdict, dataclasses.replace(EDITS, id_header="",
                                                        recipients=recipients))
    assert actions.calls == [("delrcpt", call) for call in calls]
