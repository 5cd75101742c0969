"""render_visible makes an element once for a tag in the element it opens in, and reads
a look once for a tag's attributes: mail repeats both. What is made once must still
cascade from where the tag is, and a table's lists must stay its own."""

from __future__ import annotations

import pytest

from postwarden_policies import visiblehtml
from postwarden_policies.visiblehtml import render_visible


@pytest.mark.parametrize(
    ("html", "shown"),
    [
        pytest.param('<div style="color:#fff"><span style="background:#fff">a</span></div>'
                     '<div><span style="background:#fff">b</span></div>',
                     "\n\n\nb\n", id="same-style-other-colour-around"),
        pytest.param('<div style="display:none"><b>a</b></div><div><b>b</b></div>',
                     "\nb\n", id="same-tag-other-parent"),
        pytest.param("<font color=white><span style='background:white'>a</span></font>"
                     "<span style='background:white'>b</span>", "b", id="font-colour-then-none"),
        pytest.param("<table><tr><td style=display:none>x</td><td>y</td></tr>"
                     "<tr><td style=display:none>x</td><td>y</td></tr></table>",
                     "\n\n\n\ny\n\n\n\ny\n\n\n\n", id="repeated-rows"),
        pytest.param('<p><b style="font-size:0">a</p>b</b>c', "\n\nc", id="opened-again"),
    ],
)
def test_what_is_made_once_still_cascades_from_where_the_tag_is(html: str, shown: str) -> None:
    assert render_visible(html) == shown


def test_each_table_keeps_its_own_lists() -> None:
    # Two tables in the same element: text out of place in each goes before that one.
    html = "<div>a<table>x<tr><td>1</td></tr></table><table>y<tr><td>2</td></tr></table></div>"
    assert render_visible(html) == "\nax\n\n\n\n1\n\n\n\ny\n\n\n\n2\n\n\n\n\n"


def test_a_repeated_row_makes_its_elements_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made = 0

    class Counted(visiblehtml._Element):
        __slots__ = ()

        def __init__(self, *fields: object) -> None:
            nonlocal made
            made += 1
            super().__init__(*fields)  # type: ignore[arg-type]

    monkeypatch.setattr(visiblehtml, "_Element", Counted)
    row = '<tr><td style="color:#333"><b>offer</b> <i>now</i></td><td>x</td></tr>\n'
    assert render_visible(f"<table>{row * 200}</table>").count("offer") == 200
    assert made < 20  # one per tag of the first row, not per row


def test_a_long_document_renders_the_same_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tags are split a batch at a time and the elements kept for reuse are bounded: a
    raw-text element and a table across a batch's end render as they would whole."""
    html = ("<b>a</b>" * 30 + "<script>x<b>y</b></script>" + '<i style="color:red">b</i>' * 30
            + "<table>c<tr><td>d</td></tr></table>" + "<u>e</u>" * 30)
    whole = render_visible(html)
    monkeypatch.setattr(visiblehtml, "_SPLIT_BATCH", 7)
    monkeypatch.setattr(visiblehtml, "_MADE_MOST", 3)
    assert render_visible(html) == whole
    assert whole.replace("\n", "") == "a" * 30 + "b" * 30 + "cd" + "e" * 30


def test_a_textarea_shows_its_text() -> None:
    assert render_visible('via<span style="display:none">zz</span><textarea>gr&amp;a'
                          "</textarea>") == "viagr&a"
