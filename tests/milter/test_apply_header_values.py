"""Header values as the adapter hands them to libmilter: folded with bare LF (as they
came, and wherever a line would pass 998 octets), never a break that starts a new field.
(Raw 8-bit words of a prefixed Subject: tests/policies/test_raw_subject_words.py.)"""

from __future__ import annotations

import dataclasses
import email.header

import pytest

from postwarden_milter.apply import apply_verdict
from postwarden_policies import Accept, AddHeader, ChangeHeader, Verdict

from .test_apply import EDITS, Recorder

NO_ID = dataclasses.replace(EDITS, id_header="")


def _sent(value: str, name: str = "Subject") -> str:
    """What chgheader gets for a changed value, without the leading space."""
    actions = Recorder()
    apply_verdict(actions, Verdict(Accept(), edits=(ChangeHeader(name, 1, value),)), NO_ID)
    (call,) = actions.calls
    sent = str(call[-1])
    assert sent.startswith(" ")
    return sent[1:]


def _lines(name: str, sent: str) -> list[bytes]:
    """The field's lines as Postfix writes them (it adds the CR)."""
    return f"{name}: {sent}".encode().split(b"\n")


def test_the_folding_a_value_came_with_goes_as_bare_lf() -> None:
    assert _sent("[EXT] one\r\n two\r\n\tthree") == "[EXT] one\n two\n\tthree"


@pytest.mark.parametrize("value", [
    pytest.param("[EXT] " + " ".join(f"word{n:04d}" for n in range(300)), id="words"),
    pytest.param("[EXT] " + "x" * 3000, id="no-blank-at-all"),
    pytest.param("[EXT] " + "x" * 1200 + " tail", id="a-blank-past-998"),
    pytest.param("[EXT] " + "ä" * 700 + " " + "ö" * 700, id="multi-byte-characters"),
    pytest.param("a\r\n " + "b " * 1000, id="a-long-continuation"),
])
def test_no_line_passes_998_octets(value: str) -> None:
    lines = _lines("Subject", _sent(value))
    assert len(lines) > 1 and max(len(line) for line in lines) <= 998
    lines[0].decode("utf-8")  # never a character cut in two
    for line in lines[1:]:
        assert line[:1] in (b" ", b"\t")
        line.decode("utf-8")


def test_a_long_line_is_folded_at_blanks_to_78_octets() -> None:
    value = "[EXT] " + " ".join(f"word{n:04d}" for n in range(300))
    sent = _sent(value)
    assert sent.replace("\n", "") == value  # folding only: unfolded, the same text
    assert max(len(line) for line in _lines("Subject", sent)) <= 78


def test_lines_within_998_octets_stay_as_they_are() -> None:
    value = "[EXT] " + "y " * 200 + "end"
    assert _sent(value) == value


@pytest.mark.parametrize("run", ["x" * 3000, "ä" * 600, "=?" * 600])
def test_a_run_without_blanks_goes_as_encoded_words(run: str) -> None:
    # Cut with a space put in, it read so; readers drop the blanks between encoded words.
    sent = _sent(f"[EXT] {run} end")
    lines = _lines("Subject", sent)
    assert max(len(line) for line in lines) <= 76
    shown = email.header.make_header(email.header.decode_header(sent.replace("\n", "")))
    assert str(shown) == f"[EXT] {run} end"


def test_a_run_holding_an_encoded_word_is_cut_with_a_space_put_in() -> None:
    run = "x" * 1500 + "=?utf-8?q?y?="  # re-encoded, the word would read as its code
    assert _sent(run).replace("\n ", "") == run


def test_an_encoded_word_is_never_folded_inside() -> None:
    # Readers decode an encoded word with blanks inside; a fold there would break it.
    word = "=?utf-8?q?" + "a b " * 60 + "?="
    sent = _sent("[EXT] " + "z " * 600 + word + " " + "z " * 300)
    assert any(word in line for line in sent.split("\n"))


@pytest.mark.parametrize("value", [
    pytest.param("a\nX-Injected: yes", id="lf"),
    pytest.param("a\rX-Injected: yes", id="cr"),
    pytest.param("a\r\nX-Injected: yes", id="crlf"),
])
def test_a_break_never_starts_a_new_field(value: str) -> None:
    assert _sent(value) == "a\n X-Injected: yes"


def test_blank_lines_fold_nothing() -> None:
    assert _sent("a\r\n \r\n b\r\n") == "a \n b"


@pytest.mark.parametrize("blanks", [" ", "  ", " \t "])
def test_a_run_cut_at_998_octets_leaves_no_line_of_blanks_alone(blanks: str) -> None:
    # Cut where the line reached 998 octets, the blanks ending the value went alone on
    # the last line: some parsers take a line of blanks for the end of the header section.
    for length in range(975, 980):
        value = "=?utf-8?q?a?=" + "z" * length + blanks
        sent = _sent(value)
        assert all(line.strip(" \t") for line in sent.split("\n")), (length, sent[-12:])
        assert sent.replace("\n ", "") == value
        assert max(len(line) for line in _lines("Subject", sent)) <= 998


def test_an_added_value_is_folded_too() -> None:
    actions = Recorder()
    verdict = Verdict(Accept(), edits=(AddHeader("X-Long", "v" * 1500),))
    apply_verdict(actions, verdict, NO_ID)
    (call,) = actions.calls
    assert max(len(line) for line in _lines("X-Long", str(call[-1])[1:])) <= 998


def test_an_empty_changed_value_deletes_the_header() -> None:
    # As delivery.apply_edits reads a ChangeHeader; " " would leave an empty Subject.
    actions = Recorder()
    apply_verdict(actions, Verdict(Accept(), edits=(ChangeHeader("Subject", 1, ""),)), NO_ID)
    assert actions.calls == [("chgheader", "Subject", 1, "")]


def test_a_line_holding_encoded_words_is_folded_to_76_characters() -> None:
    # RFC 2047: such a line is at most 76 characters. The raw 8-bit words of a prefixed
    # Subject go as a run of encoded words of up to 75 each, on one line as they came.
    word = "=?UTF-8?Q?" + "=C3=A4" * 10 + "?="
    value = "[EXT] Re: " + " ".join([word] * 4)
    sent = _sent(value)
    assert sent.replace("\n", "") == value
    assert max(len(line) for line in _lines("Subject", sent)) <= 76
    short = "[EXT] =?UTF-8?Q?" + "=C3=A4" * 8 + "?="  # 76 with "Subject: "
    assert _sent(short) == short
