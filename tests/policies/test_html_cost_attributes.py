"""The cost guard and a tag with many attributes: html5ever looks for a duplicate of
each attribute among those before it, so one start (or end) tag of N distinct
attributes costs nh3 N squared (``<p a0 ... a19999>``, 130 KB: about 60 ms; 3 MB: 10 s)."""

from __future__ import annotations

import pytest

from postwarden_policies import sanitize
from postwarden_policies.html_cost import BUDGET, estimated_cost, too_costly
from postwarden_policies.rewrite import HtmlOptions
from postwarden_policies.sanitize import sanitize_html
from tests.memory import peak_of

OPTIONS = HtmlOptions("keep", frozenset({"https"}))
NAMES = " ".join(f"a{i}" for i in range(20_000))
FLOODS = {
    "distinct attributes": f"<p {NAMES}>x</p>",
    "on an end tag": f"<p>x</p {NAMES}>",
    "after a quoted value that holds >": f'<p title=">" {NAMES}>x</p>',
    "after a quoted value that holds a tag": f"<p title='<b>x</b>' {NAMES}>x</p>",
    # A tag the tokenizer does not see (in a comment, in raw text) must not hide one it
    # sees in a quoted value of its own.
    "behind a comment": f'<!-- <i x=" --><p title=">" {NAMES}>x</p>',
    "on the end tag of raw text": f'<style><i x="</style {NAMES[:50_000]} c=">" '
    f"{NAMES[50_000:]}>",
    # A duplicate of the last distinct attribute looks through all of them.
    "duplicates of the last": "<p " + " ".join(f"a{i}" for i in range(5_000))
    + " a4999" * 60_000 + ">x</p>",
}
ORDINARY_TAGS = {
    "60 attributes with long values": "<td " + " ".join(
        f'data-field-{i}="{"value " * 8}"' for i in range(60)) + ">x</td>",
    "a long style": '<p style="' + "color: #333333; font-family: Arial; " * 200 + '">x</p>',
    "an image as a data: URL": '<img src="data:image/png;base64,' + "QUJD" * 250_000 + '">',
    "many tags with a few attributes each": '<a href="https://x.test/" class="c" title="t">'
    "x</a>" * 5_000,
}


@pytest.mark.parametrize("html", FLOODS.values(), ids=FLOODS)
def test_a_tag_with_thousands_of_attributes_is_too_costly(html: str) -> None:
    assert too_costly(html.lower())


@pytest.mark.parametrize("html", ORDINARY_TAGS.values(), ids=ORDINARY_TAGS)
def test_ordinary_attributes_cost_next_to_nothing(html: str) -> None:
    assert estimated_cost(html.lower(), BUDGET) < BUDGET // 100


@pytest.mark.parametrize("lines", [9, 1_000])
def test_unescaped_less_than_signs_in_text_are_read_once(lines: int) -> None:
    # "<" in text with no ">" after it: each starts a tag to the tokenizer, which reads
    # the rest as attributes of the first (cheap for nh3: 0.7 ms at 1,000 lines).
    html = "<pre>\n" + "".join(f"host{i}: load <limit ok\n" for i in range(lines)) + "</pre>"
    assert not too_costly(html)
    _, removed = sanitize_html(html + "<script>x</script>", OPTIONS)
    assert ("too_complex", 1) not in removed


def test_quoted_values_that_nest_over_and_over_are_too_costly() -> None:
    # Each tag could start a value that holds the rest: read from each, quadratic.
    assert too_costly('<i x="' * 20_000)


def test_duplicates_of_one_name_cost_nothing() -> None:
    # nh3 keeps the first and looks through one attribute for each of the others.
    assert estimated_cost("<p" + " a" * 200_000 + ">", BUDGET) < BUDGET // 100


def test_a_flooded_tag_gets_the_notice_without_nh3(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_nh3(*_: object) -> None:
        raise AssertionError("nh3 was asked to clean a part too costly for it")

    monkeypatch.setattr(sanitize, "_cleaner", no_nh3)
    assert sanitize_html(FLOODS["distinct attributes"], OPTIONS) == sanitize.removed_whole(
        "too_complex")


def test_a_tag_with_60_ordinary_attributes_is_sanitized() -> None:
    html = ORDINARY_TAGS["60 attributes with long values"].replace("<td ", '<p onclick="x" ')
    clean, removed = sanitize_html(html, OPTIONS)
    assert ("@onclick", 1) in removed
    assert ("too_complex", 1) not in removed
    assert clean == "<p>x</p>"


def test_a_tag_of_a_million_attributes_is_estimated_in_memory_of_its_size() -> None:
    # Where its attributes end was one match repeating a group: sre kept a backtracking
    # point for each attribute, 600 MB for this 4 MB tag (in the milter, then a child).
    html = "<a " + "x=1 " * 1_000_000 + ">"
    cost, peak = peak_of(lambda: estimated_cost(html, BUDGET))
    assert cost < BUDGET and peak < 10 * len(html)
