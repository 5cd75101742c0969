"""add_header refuses the headers that define how the body is read (as remove_header
does) and the engine's own X-Postwarden-Flags, at the header's line."""

from __future__ import annotations

import pytest

from postwarden_policies import check_policy_text


@pytest.mark.parametrize(("header", "reason"), [
    ("Content-Type", "it defines how the body is read"),
    ("content-transfer-encoding", "it defines how the body is read"),
    ("MIME-Version", "it defines how the body is read"),
    ("X-Postwarden-Flags", "postwarden adds it itself (tag_flags)"),
    ("x-postwarden-flags", "postwarden adds it itself (tag_flags)"),
])
def test_add_header_refuses(header: str, reason: str) -> None:
    text = (
        "version: 1\nname: p\nrules:\n  - name: r\n    then:\n      add_header:\n"
        f"        X-Ok: '1'\n        {header}: x\n"
    )
    assert [str(i) for i in check_policy_text("p.yaml", text)] == [
        f"p.yaml:8:9: rule 'r': {header} cannot be added: {reason}"
    ]


def test_other_headers_may_be_added() -> None:
    text = "version: 1\nname: p\nrules:\n  - name: r\n    then: {add_header: {X-Scanned: yes}}\n"
    assert check_policy_text("p.yaml", text) == []
