"""A rule that rejects, defers or discards a message and also edits it: the edits could
never apply (the message is not delivered), and a team reading the file would think they
do. ``check`` names each at its line; edits with ``quarantine`` or ``accept`` apply."""

from __future__ import annotations

import pytest

from postwarden_policies import check_policy_text

HEAD = """version: 1
name: inbound
rules:
  - name: block-exe
    when:
      attachment:
        filename: ["*.exe"]
    then:
"""


@pytest.mark.parametrize("action", ["reject", "tempfail", "discard"])
def test_edits_with_an_undelivering_action_are_named(action: str) -> None:
    text = HEAD + (f"      action: {action}\n"
                   "      add_header: {X-Seen: yes}\n"
                   "      subject_prefix: \"[blocked] \"\n"
                   "      notify: [security]\n")
    wasted = f"never applies with action {action}: the message is not delivered"
    assert [str(issue) for issue in check_policy_text("p.yaml", text)] == [
        f"p.yaml:10:19: rule 'block-exe': add_header {wasted}",
        f"p.yaml:11:23: rule 'block-exe': subject_prefix {wasted}",
    ]


def test_stripping_and_removing_with_reject_are_named() -> None:
    text = HEAD + ("      action: reject\n"
                   "      strip_attachment: true\n"
                   "      remove_header: [X-Mailer]\n")
    wasted = "never applies with action reject: the message is not delivered"
    assert [str(issue) for issue in check_policy_text("p.yaml", text)] == [
        f"p.yaml:10:25: rule 'block-exe': strip_attachment {wasted}",
        f"p.yaml:11:22: rule 'block-exe': remove_header {wasted}",
    ]


@pytest.mark.parametrize("then", [
    "      action: quarantine\n      add_header: {X-Held: yes}\n",
    "      action: accept\n      subject_prefix: \"[ok] \"\n",
    "      action: reject\n      strip_attachment: false\n      notify: [security]\n",
])
def test_edits_that_apply_load(then: str) -> None:
    assert check_policy_text("p.yaml", HEAD + then) == []
