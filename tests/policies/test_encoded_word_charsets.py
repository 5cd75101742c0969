"""Encoded words read by the charset labels readers know (WHATWG), as body text is."""

from __future__ import annotations

import base64

import pytest

from postwarden_policies import Envelope, evaluate_message, parse_message
from postwarden_policies.headers import decode_words

from .policy_helpers import policy


def _word(label: str, codec: str, text: str = "viagra") -> str:
    return f"=?{label}?b?{base64.b64encode(text.encode(codec)).decode()}?="


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        pytest.param("unicode", "utf-16-le", id="unicode-is-utf-16le"),
        pytest.param("unicodefffe", "utf-16-be", id="unicodefffe-is-utf-16be"),
        pytest.param("x-mac-cyrillic", "mac-cyrillic", id="x-mac-cyrillic"),
        pytest.param("x-sjis", "cp932", id="x-sjis"),
        pytest.param("ks_c_5601-1989", "cp949", id="ks_c_5601-1989"),
        # UTF-7 as Outlook's MLang names it.
        pytest.param("x-unicode-2-0-utf-7", "utf-7", id="mlang-utf-7"),
    ],
)
def test_a_subject_rule_reads_a_label_only_readers_know(label: str, codec: str) -> None:
    raw = f"From: a@elsewhere.test\r\nSubject: {_word(label, codec)}\r\n\r\nhi\r\n".encode()
    policy_set = policy("rules:\n  - name: subj\n    when: {subject: '(?i)viagra'}\n"
                        "    then: reject\n")
    verdict = evaluate_message(policy_set, raw, Envelope("a@elsewhere.test", ("b@example.com",)))
    assert verdict.rules == ("subj",)
    assert "unknown_charset" not in verdict.flags


@pytest.mark.parametrize(("label", "data"), [
    ("unicode", "viagra".encode("utf-16-le")),
    ("x-unicode-2-0-utf-7", b"+AHY-iagra"),  # "v" written as UTF-7 may write any letter
])
def test_a_body_in_a_label_only_readers_know_is_read_as_they_read_it(
    label: str, data: bytes
) -> None:
    body = base64.b64encode(data).decode()
    raw = (
        f"From: a@elsewhere.test\r\nContent-Type: text/plain; charset={label}\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{body}\r\n"
    ).encode()
    assert "viagra" in parse_message(raw, Envelope()).text


def test_a_word_in_a_charset_readers_may_read_otherwise_is_flagged() -> None:
    flags: set[str] = set()
    assert decode_words(_word("utf-7", "utf-7"), flags) == "viagra"
    assert flags == {"unshared_charset"}


def test_an_unknown_label_is_still_read_as_utf8_and_flagged() -> None:
    flags: set[str] = set()
    assert decode_words(_word("x-nope", "utf-8", "café"), flags) == "café"
    assert flags == {"unknown_charset"}


def test_an_rfc2231_file_name_reads_a_label_only_readers_know() -> None:
    name = "".join(f"%{byte:02X}" for byte in "evil.exe".encode("utf-16-le"))
    raw = (
        'From: a@elsewhere.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; '
        'boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n'
        "Content-Type: application/octet-stream\r\n"
        f"Content-Disposition: attachment; filename*=unicode''{name}\r\n\r\nx\r\n--b--\r\n"
    ).encode()
    [attachment] = parse_message(raw, Envelope()).attachments
    assert attachment.filename == "evil.exe"
