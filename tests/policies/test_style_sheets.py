"""Body rules see a word a sender split with text a ``<style>`` sheet hides.

Rules hide what inline CSS would, read by their selectors' subjects as far as simple
selectors go (tag, ``.class``, ``#id``, ``tag.class``, ``tag#id``), inside ``@media``
for screens and ``@supports`` too; the cascade decides between a sheet's
rules and the style attribute (bench/style_sheets.py shows the reading linear in the HTML).
"""

from __future__ import annotations

import pytest

from .policy_helpers import body_rule_matches, text_message


def _rejected(html: str) -> bool:
    return body_rule_matches("(?i)viagra", text_message("text/html", html))


def _split(sheet: str, tag: str = '<span class="h">') -> str:
    """A word split by an element the sheet may hide."""
    name = tag[1:].split(maxsplit=1)[0].rstrip(">")
    return f"<html><head><style>{sheet}</style></head><body><p>via{tag}xyz</{name}>gra</p>"


@pytest.mark.parametrize(
    ("sheet", "tag"),
    [
        pytest.param(".h{display:none}", '<span class="h">', id="class"),
        pytest.param(".h { visibility : hidden }", '<span class="h">', id="visibility"),
        pytest.param(".h{font-size:0}", '<span class="h">', id="font-size-0"),
        pytest.param(".h{font:0/0 a}", '<span class="h">', id="font-shorthand"),
        pytest.param(".h{opacity:0}", '<span class="h">', id="opacity"),
        pytest.param(".h{color:transparent}", '<span class="h">', id="transparent"),
        pytest.param(".h{mso-hide:all}", '<span class="h">', id="mso-hide"),
        pytest.param(".h{max-height:0;overflow:hidden}", '<span class="h">', id="zero-box"),
        pytest.param("#x{display:none}", '<span id="x">', id="id"),
        pytest.param("em{display:none}", "<em>", id="tag"),
        pytest.param("EM{display:none}", "<em>", id="tag-upper-case"),
        pytest.param("span.h{display:none}", '<span class="h">', id="tag-class"),
        pytest.param("span#x{display:none}", "<span id=x>", id="tag-id"),
        pytest.param("*.h{display:none}", '<span class="h">', id="universal-class"),
        pytest.param(".a, p > b, .h {display:none}", '<span class="h">', id="selector-list"),
        pytest.param(".h{display:none}", '<span class="a  H\tb">', id="one-of-classes"),
        pytest.param(".h{display:none}", '<span class="&#104;">', id="reference-in-class"),
        pytest.param(".\\68 {display:none}", '<span class="h">', id="escape-in-selector"),
        pytest.param(".h{displ\\61y:none}", '<span class="h">', id="escape-in-property"),
        pytest.param(".h{/* x */display:/**/none}", '<span class="h">', id="comments"),
        pytest.param("<!-- .h{display:none} -->", '<span class="h">', id="cdo-cdc"),
        pytest.param("@import url(x.css); .h{display:none}", '<span class="h">',
                     id="after-import"),
        pytest.param("@media print{.a{color:red}} .h{display:none}", '<span class="h">',
                     id="after-media-block"),
        pytest.param('.a{content:"{"} .h{display:none}', '<span class="h">',
                     id="brace-in-string"),
        pytest.param(".h{color:red;display:none", '<span class="h">', id="unclosed-rule"),
        pytest.param(".h{display:none !important}", '<span class="h" style="display:inline">',
                     id="important-over-style-attribute"),
        pytest.param("span.h{display:none} .h{display:inline}", '<span class="h">',
                     id="more-specific-wins"),
        pytest.param(".h{display:none} .h{color:red}", '<span class="h">', id="merged-rules"),
        # Read as applying wider than written: they hid text from body rules unread.
        pytest.param("@media all{.h{display:none}}", '<span class="h">', id="media-all"),
        pytest.param("@media only screen and (min-width:1px){.h{display:none}}",
                     '<span class="h">', id="media-screen-feature"),
        pytest.param("@media(min-width:0){.h{display:none}}", '<span class="h">',
                     id="media-feature-unspaced"),
        pytest.param("@media print, screen{.h{display:none}}", '<span class="h">',
                     id="media-print-or-screen"),
        pytest.param("@\\6d edia all{.h{display:none}}", '<span class="h">',
                     id="media-escaped"),
        pytest.param("@supports (display:none){@media all{.h{display:none}}}",
                     '<span class="h">', id="nested-groups"),
        pytest.param("p .h{display:none}", '<span class="h">', id="descendant"),
        pytest.param("p>span.h{display:none}", '<span class="h">', id="child"),
        pytest.param(".h:not(.x){display:none}", '<span class="h">', id="not"),
        pytest.param(".h.k{display:none}", '<span class="h k">', id="two-classes"),
        pytest.param("span[class]{display:none}", '<span class="h">', id="tag-attribute"),
        pytest.param(".h{display:none} p .h:hover{display:inline !important}",
                     '<span class="h">', id="wider-rule-does-not-show-what-another-hides"),
    ],
)
def test_text_a_sheet_hides_inside_a_word_does_not_hide_it(sheet: str, tag: str) -> None:
    assert _rejected(_split(sheet, tag))


def test_a_sheet_after_the_text_hides_it_too() -> None:
    """A sheet applies to the whole document, wherever it is."""
    assert _rejected('<p>via<span class="h">xyz</span>gra</p><style>.h{display:none}</style>')


@pytest.mark.parametrize(
    ("sheet", "tag"),
    [
        pytest.param(".h{display:none} .h{display:inline}", '<span class="h">', id="later-wins"),
        pytest.param(".h{display:none}", '<span class="h" style="display:inline">',
                     id="style-attribute-wins"),
        pytest.param(".h{display:none !important}",
                     '<span class="h" style="display:inline !important">',
                     id="important-style-attribute-wins"),
        pytest.param("#x{display:inline} .h{display:none}", '<span class="h" id="x">',
                     id="id-wins-over-class"),
        pytest.param(".h{display:none}", '<span class="hx">', id="other-class"),
        pytest.param("b.h{display:none}", '<span class="h">', id="other-tag"),
        pytest.param("@media print{.h{display:none}}", '<span class="h">', id="media-print"),
        pytest.param("@media only print, speech{.h{display:none}}", '<span class="h">',
                     id="media-print-or-speech"),
        pytest.param("@font-face{font-family:h} @page{.h{display:none}}", '<span class="h">',
                     id="other-at-rules"),
        pytest.param(".h::before{display:none}", '<span class="h">', id="pseudo-element"),
        pytest.param(".h:after{display:none}", '<span class="h">', id="legacy-pseudo-element"),
        pytest.param("[class=h]{display:none}", '<span class="h">', id="attribute-alone"),
        pytest.param(".h{color:red}", '<span class="h">', id="nothing-hidden"),
    ],
)
def test_text_the_cascade_shows_is_not_left_out(sheet: str, tag: str) -> None:
    assert not _rejected(_split(sheet, tag))


def test_a_hidden_keyword_is_still_found() -> None:
    assert _rejected('<style>.h{display:none}</style><p>hi<span class="h">viagra</span></p>')


_HIDDEN_BY_HTML = "<style>.h{display:none}</style>"
_SPLIT = '<p>via<span class="h">xyz</span>gra</p>'


@pytest.mark.parametrize(
    "html",
    [
        # An SVG <style> holds markup: references and CDATA sections are text.
        pytest.param("<svg><style>.h{display:&#110;one}</style></svg>" + _SPLIT,
                     id="reference-in-svg-style"),
        pytest.param("<svg><style><![CDATA[.h{display:none}]]></style></svg>" + _SPLIT,
                     id="cdata-section-in-svg-style"),
        # Its own text only: an element in it breaks no declaration, a comment is none.
        pytest.param("<svg><style>.h{display:<g>;</g>no<!-- -->ne}</style></svg>" + _SPLIT,
                     id="child-element-and-comment-left-out"),
        # Rules readers do not read there show nothing a sheet hides.
        pytest.param(_HIDDEN_BY_HTML + "<svg><style><!-- .h{display:inline} --></style></svg>"
                     + _SPLIT, id="comment-in-svg-style-is-no-rule"),
        pytest.param(_HIDDEN_BY_HTML + "<svg><style>a{<b>}.h{display:inline}</b></style></svg>"
                     + _SPLIT, id="html-breaking-out-is-no-rule"),
    ],
)
def test_a_sheet_in_svg_is_read_as_readers_read_it(html: str) -> None:
    assert _rejected(html)


@pytest.mark.parametrize(
    "html",
    [
        pytest.param("<svg><style><!-- .h{display:none} --></style></svg>" + _SPLIT,
                     id="comment-in-svg-style"),
        pytest.param("<svg><style><b>.h{display:none}</b></style></svg>" + _SPLIT,
                     id="after-a-breakout-tag"),
        pytest.param("<svg><style><g>.h{display:none}</g></style></svg>" + _SPLIT,
                     id="in-an-element-in-svg-style"),
    ],
)
def test_what_an_svg_style_does_not_hold_as_its_text_hides_nothing(html: str) -> None:
    assert not _rejected(html)


@pytest.mark.parametrize(
    "html",
    [
        pytest.param("<math><style>.h{display:none}</style></math>" + _SPLIT, id="in-math"),
        pytest.param("<math><mrow><style>.h{display:none}</style></mrow></math>" + _SPLIT,
                     id="in-a-mathml-element"),
    ],
)
def test_a_mathml_style_is_no_sheet(html: str) -> None:
    """MathML has no style element: readers show a <style> there as an element it does
    not know, and read no rule in it (taken for a sheet, it hid what they show)."""
    assert not _rejected(html)


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(".a{color:red", id="unclosed-rule"),
        pytest.param(".a{content:'x", id="unclosed-string"),
        pytest.param("/* x", id="unclosed-comment"),
        pytest.param("@media print{.a{color:red}", id="unclosed-media-print"),
    ],
)
def test_what_a_sheet_leaves_open_ends_with_it(first: str) -> None:
    """Each <style> is a sheet of its own: what one leaves open hides no rule of the next."""
    assert _rejected(f"<style>{first}</style><style>.h{{display:none}}</style>" + _SPLIT)


_SHOWN = "<style>.h{display:inline!important}</style>"


@pytest.mark.parametrize(
    "decoy",
    [
        pytest.param(f"<!-- {_SHOWN} -->", id="comment"),
        pytest.param(f'<p title="{_SHOWN}">x</p>', id="attribute-value"),
        pytest.param(f"<textarea>{_SHOWN}</textarea>", id="textarea"),
        pytest.param(f"<title>{_SHOWN}</title>", id="title"),
        pytest.param(f"<script>{_SHOWN}</script>", id="script"),
        pytest.param(f"<xmp>{_SHOWN}</xmp>", id="xmp"),
        # A template's content is no part of the document: its sheets apply to nothing.
        pytest.param(f"<template>{_SHOWN}</template>", id="template"),
        pytest.param(f"<template><template></template>{_SHOWN}</template>",
                     id="nested-template"),
        pytest.param(f"<svg></svg><template>{_SHOWN}</template>", id="template-with-svg"),
    ],
)
def test_a_style_tag_html_does_not_read_as_one_shows_nothing(decoy: str) -> None:
    """A <style> that HTML's tokenizer reads as a comment, an attribute value or raw
    text is no sheet: read as one, its rules showed text a real sheet hides."""
    assert _rejected(_HIDDEN_BY_HTML + decoy + _SPLIT)


@pytest.mark.parametrize(
    "decoy",
    [
        pytest.param("<!-- <style>.a{content:' -->", id="comment"),
        pytest.param('<p title="<style>.a{content:\'">x</p>', id="attribute-value"),
        pytest.param("<textarea><style>.a{content:'</textarea>", id="textarea"),
    ],
)
def test_a_sheet_after_a_style_tag_that_is_none_is_read(decoy: str) -> None:
    """Read as a sheet, a <style> that is none took the real one's rules into its
    string."""
    assert _rejected(decoy + _HIDDEN_BY_HTML + _SPLIT)


def test_a_head_sheet_in_upper_case_with_attributes_is_read() -> None:
    assert _rejected('<HTML><HEAD><STYLE type="text/css" media=screen>.h{display:none}'
                     "</STYLE></HEAD><BODY>" + _SPLIT)
