"""RFC 2231 continuation pieces as readers join them: Thunderbird stops at a gap
or a repeated number, so ``filename*0="evil.js"; filename*2=".txt"`` is shown as
evil.js and a ``*.js`` rule must see that name as well as the whole join."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies import Envelope, evaluate_message, load_policy_set, parse_message
from postwarden_policies.headers import parameter_list

ENV = Envelope("someone@elsewhere.test", ("alice@example.com",), "198.51.100.7")
EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "examples" / "inbound-default.yaml"

_MESSAGE = (
    b"From: a@elsewhere.test\r\nTo: alice@example.com\r\nSubject: invoice\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Disposition: attachment; %s\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"V1NjcmlwdC5FY2hvICJoaSI=\r\n--b--\r\n"
)
_EVASIONS = pytest.mark.parametrize(
    "params",
    [
        b'filename*0="evil.js"; filename*2=".txt"',
        b'filename*0="evil.js"; filename*0=".txt"',
        b'filename*0="evil.js"; filename*01=".txt"',
        b'filename*0="evil.js"; filename*1000=".txt"',
    ],
    ids=["gap", "repeated", "leading-zero", "over-999"],
)


@_EVASIONS
def test_the_name_a_reader_shows_is_blocked(params: bytes) -> None:
    raw = _MESSAGE % params
    facts = parse_message(raw, ENV)
    [part] = facts.attachments
    expected = (".txtevil.js",) if b"*0=\".txt\"" in params else ("evil.js.txt",)
    assert part.filenames == ("evil.js", *expected)
    assert "ambiguous_filename" in facts.flags
    verdict = evaluate_message(load_policy_set([str(EXAMPLE)]), raw, ENV)
    assert verdict.rules[:1] == ("block-executables",)


def test_pieces_in_order_read_one_way() -> None:
    facts = parse_message(_MESSAGE % b'filename*0="evil"; filename*1=".js"', ENV)
    assert facts.attachments[0].filenames == ("evil.js",)
    assert "ambiguous_filename" not in facts.flags


@pytest.mark.parametrize(
    ("value", "found", "preferred"),
    [
        ("a; n*0=x; n*1=y; n*3=z", ["xy", "xyz"], "xy"),
        ("a; n*0=x; n*1=y; n*1=w; n*2=z", ["xy", "xwyz"], "xy"),  # repeats sorted by text
        ("a; n*00=x; n*1=y", ["xy"], "xy"),  # "00" reads as 0 only when all are joined
        ("a; n*1=y; n*2=z", ["yz"], "yz"),  # no *0: Thunderbird has no value to add
        ("a; n*0*=utf-8''%C3; n*1*=%A9; n*3=x", ["é", "éx"], "é"),  # decoded together
        ("a; n*0=x; n*1=y; n*2=z", ["xyz"], "xyz"),
    ],
    ids=["gap", "repeat", "leading-zero-0", "no-zero", "encoded", "in-order"],
)
def test_each_reading_is_listed(value: str, found: list[str], preferred: str) -> None:
    _, parameters, preferred_of = parameter_list(value, set())
    assert parameters == [("n", v) for v in found]
    assert preferred_of == {"n": preferred}


def test_a_boundary_read_two_ways_conflicts() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary*0=a; boundary*2=b\r\n\r\n"
        b"--a\r\n\r\nx\r\n--a--\r\n"
    )
    facts = parse_message(raw, ENV)
    assert "conflicting_parameter" in facts.flags
