"""Body rules see a word a sender split with what readers do not show.

Zero-width and other default-ignorable characters, written out or as
references, in plain text and in HTML; text hidden by inline CSS or the
``hidden`` attribute in the middle of a word; text drawn reversed by a bidi
override; alt text that readers show with images off.
"""

from __future__ import annotations

import base64

import pytest

from postwarden_policies import (
    Envelope,
    bodytext,
    evaluate,
    parse_message,
    visiblehtml,
)
from postwarden_policies.bodytext import Renderings
from postwarden_policies.visiblehtml import render_visible

from .policy_helpers import body_rule, body_rule_matches, html_part, rule_policy, text_message

INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e", "\u034f",
             "\u180e", "\U000e0041", "\ufe0f"]


def _rejected(raw: bytes) -> bool:
    return body_rule_matches("(?i)viagra", raw)


@pytest.mark.parametrize("char", [pytest.param(c, id=f"U+{ord(c):04X}") for c in INVISIBLE])
@pytest.mark.parametrize("content_type", ["text/plain", "text/html", "text/x-unknown"])
def test_an_invisible_character_inside_the_word_does_not_hide_it(
    char: str, content_type: str
) -> None:
    assert _rejected(text_message(content_type, f"buy via{char}gra now"))


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85", "\u1680"])
@pytest.mark.parametrize("content_type", ["text/plain", "text/html"])
def test_a_separator_readers_draw_as_a_break_or_a_space_is_blank_to_rules(
    char: str, content_type: str
) -> None:
    """RE2's \\s is [\\t\\n\\f\\r ]: free, U+2028, money was one run to free\\s+money."""
    assert body_rule_matches("(?i)free\\s+money", text_message(content_type, f"free{char}money"))
    subject = f"Subject: =?utf-8?b?{base64.b64encode(f'free{char}money'.encode()).decode()}?="
    policy = rule_policy("subject: '(?i)free\\s+money'", "reject")
    facts = parse_message(f"{subject}\r\n\r\nhi\r\n".encode(), Envelope())
    assert evaluate(policy, facts).rules == ("r",)


@pytest.mark.parametrize(
    "reference", ["&#8203;", "&#x200B;", "&#x200b", "&shy;", "&zwnj;", "&ZeroWidthSpace;",
                  "&NoBreak;", "&#65279;", "&lrm;"],
)
def test_an_invisible_character_written_as_a_reference_does_not_hide_the_word(
    reference: str,
) -> None:
    assert _rejected(text_message("text/html", f"<p>v{reference}ia{reference}gra</p>"))


def test_an_invisible_character_in_quoted_printable_flowed_text_does_not_hide_the_word() -> None:
    body = "via=E2=80=8B \r\ngra"
    assert _rejected(text_message("text/plain; format=flowed; delsp=yes", body, "quoted-printable"))


def test_a_soft_break_with_padding_after_it_does_not_hide_the_word() -> None:
    # RFC 2045 readers (Dovecot, Roundcube) drop the blanks after "=": a soft break,
    # "viagra"; Thunderbird shows "via= " and "gra". Rules read both.
    assert _rejected(text_message("text/plain", "via= \t\r\ngra", "quoted-printable"))


@pytest.mark.parametrize(
    "hidden",
    [
        pytest.param('<span style="display:none">xyz</span>', id="display-none"),
        pytest.param("<span style='DISPLAY : None !important'>xyz</span>", id="spaced-important"),
        pytest.param("<span style=display:none>x<b>y</b>z</span>", id="unquoted-nested"),
        pytest.param('<div style="display:none">xyz</div>', id="hidden-block-no-break"),
        pytest.param('<span style="visibility:hidden">xyz</span>', id="visibility-hidden"),
        pytest.param('<span style="font-size:0">xyz</span>', id="font-size-0"),
        pytest.param('<span style="font-size:0px;line-height:0">xyz</span>', id="font-size-0px"),
        pytest.param('<span style="font-size:1px">xyz</span>', id="font-size-1px"),
        pytest.param('<span style="font:0/0 a">xyz</span>', id="font-shorthand"),
        pytest.param('<span style="font-size:calc(0px)">xyz</span>', id="font-size-calc"),
        pytest.param('<span style="opacity:0">xyz</span>', id="opacity"),
        pytest.param('<span style="color:transparent">xyz</span>', id="transparent"),
        pytest.param('<span style="color:rgba(0,0,0,0)">xyz</span>', id="rgba-alpha-0"),
        pytest.param('<span style="max-height:0;overflow:hidden">xyz</span>', id="zero-box"),
        pytest.param('<span style="mso-hide:all">xyz</span>', id="mso-hide"),
        pytest.param("<span hidden>xyz</span>", id="hidden-attribute"),
        pytest.param("<x-y hidden>xyz</x-y>", id="custom-element"),
        pytest.param('<span style="displ&#97;y:n&#111;ne">xyz</span>', id="references-in-style"),
        pytest.param('<span style="display:n\\6f ne">xyz</span>', id="css-escape"),
        pytest.param('<span style="display:/**/none">xyz</span>', id="css-comment"),
        pytest.param('<span title="a>b" style="display:none">xyz</span>', id="gt-in-value"),
        pytest.param("<template>xyz</template>", id="template"),
        pytest.param('<b><i style="display:none">x</b>yz</i>', id="reopened-formatting"),
        pytest.param('<span style="display:none">x<p>y</p>z</span>', id="block-inside"),
        # Readers ignore an end tag whose element is outside an SVG element holding HTML
        # again, or an SVG one below HTML: the hidden span stays open.
        pytest.param("<span hidden><svg><foreignObject width=9 height=9></span>xyz"
                     "</foreignObject></svg></span>", id="end-tag-past-foreignobject"),
        pytest.param("<span hidden><math><mi></span>xyz</mi></math></span>",
                     id="end-tag-past-mathml-text"),
        # SVG's presentation attributes are CSS.
        pytest.param("<svg><text><tspan display=none>xyz</tspan></text></svg>",
                     id="svg-display-attribute"),
        pytest.param("<svg><text><tspan visibility='hidden'>xyz</tspan></text></svg>",
                     id="svg-visibility-attribute"),
        pytest.param("<svg><text opacity=0>xyz</text></svg>", id="svg-opacity-attribute"),
        pytest.param("<svg font-size=0><text>xyz</text></svg>", id="svg-font-size-attribute"),
        # SVG paints text by its fill, not its colour.
        pytest.param("<svg><text><tspan fill=none>xyz</tspan></text></svg>", id="svg-fill-none"),
        pytest.param("<svg><text fill-opacity=0>xyz</text></svg>", id="svg-fill-opacity"),
        pytest.param("<svg><text style='fill:rgba(0,0,0,0)'>xyz</text></svg>",
                     id="svg-fill-transparent"),
        # MathML draws only the first child of a <semantics> or <maction>, and nothing an
        # <mphantom> holds.
        pytest.param("<math><semantics><mi/><annotation>xyz</annotation></semantics></math>",
                     id="mathml-annotation"),
        pytest.param("<math><maction><mi></mi><mtext>xyz</mtext></maction></math>",
                     id="mathml-action-state"),
        pytest.param("<math><mphantom><mi>xyz</mi></mphantom></math>", id="mathml-phantom"),
        # MathML's mathsize, mathcolor and mathbackground are CSS.
        pytest.param("<math><mi mathsize=0>xyz</mi></math>", id="mathml-size-attribute"),
        pytest.param("<math mathcolor=transparent><mi>xyz</mi></math>",
                     id="mathml-colour-attribute"),
        pytest.param("<math><mi mathcolor=#fff mathbackground=white>xyz</mi></math>",
                     id="mathml-colour-on-background"),
        pytest.param("<svg><foreignObject width=9 height=9><span hidden></foreignObject>xyz"
                     "</span></foreignObject></svg>", id="svg-end-tag-past-html"),
        # An <svg> or <foreignObject> of no width or height shows nothing (a
        # <foreignObject>'s is none unless set).
        pytest.param("<svg width=0 height=0><text>xyz</text></svg>", id="svg-of-no-size"),
        pytest.param("<svg width=9 height=9><foreignObject>xyz</foreignObject></svg>",
                     id="foreignobject-of-no-size"),
        pytest.param("<svg style='height:0'><text>xyz</text></svg>", id="svg-of-no-css-height"),
        pytest.param("<svg width=1 height=1px><text>xyz</text></svg>", id="svg-too-small"),
        pytest.param("<svg><foreignObject width=9 height=9 style=width:0>xyz</foreignObject>"
                     "</svg>", id="foreignobject-of-no-css-width"),
    ],
)
def test_text_hidden_inside_a_word_does_not_hide_it(hidden: str) -> None:
    assert _rejected(text_message("text/html", f"<div>via{hidden}gra</div>"))


@pytest.mark.parametrize(
    "html",
    [
        pytest.param("<p>via<wbr>gra</p>", id="wbr"),
        pytest.param("<p>via<!-- x -->gra</p>", id="comment"),
        pytest.param('<div>via<div style="display:inline">gra</div></div>',
                     id="block-made-inline"),
        pytest.param('<p>via<img src="cid:x" alt="gra"></p>', id="alt-text"),
        pytest.param('<p>via<IMAGE src="cid:x" alt="gra">', id="image-is-img"),
        pytest.param("<p>via<input value='gra'></p>", id="input-value"),
        pytest.param("<p><bdo dir=rtl>argaiv</bdo></p>", id="bdo"),
        pytest.param('<p style="direction:rtl;unicode-bidi:bidi-override">argaiv</p>',
                     id="css-bidi-override"),
        pytest.param("<p>\u202eargaiv\u202c</p>", id="rlo-in-html"),
        pytest.param("<p>&#x202e;argaiv&#x202c;</p>", id="rlo-reference"),
        pytest.param("<p>vi<table>agra<tr><td>x</td></tr></table></p>", id="text-out-of-place"),
        pytest.param("vi<table><tr><b>agra</b><td>x</td></tr></table>", id="tag-out-of-place"),
        pytest.param("vi<table style='display:none'>agra<tr><td>x</table>",
                     id="out-of-place-past-a-hidden-table"),
        # A cell opens the row (and a row the section) it is not in: their end tags end
        # the cell, what follows out of place.
        pytest.param("vi<table><td>x</tr>agra</table>", id="after-the-row-a-cell-implied"),
        pytest.param("vi<table><td>x</tbody>agra</table>", id="after-the-section-a-cell-implied"),
    ],
)
def test_a_word_readers_show_whole_is_found(html: str) -> None:
    assert _rejected(text_message("text/html", html))


@pytest.mark.parametrize(
    "html",
    [
        pytest.param("<p>via<!--[if mso]>gra<![endif]--></p>", id="shown-to-outlook"),
        pytest.param("<p>via<!--[if (gte mso 9)|(IE)]>gra<![endif]--></p>", id="vml-condition"),
        pytest.param("<p>via<!--[if !mso]><!-->xyz<!--<![endif]-->gra</p>",
                     id="hidden-from-outlook"),
        pytest.param("<p>via<![if !mso]>xyz<![endif]>gra</p>", id="bogus-comment-form"),
        pytest.param("<p>via<!--[if mso]>gra", id="unclosed"),
    ],
)
def test_a_word_outlook_shows_whole_is_found(html: str) -> None:
    """Outlook's Word engine shows what a conditional comment's condition keeps."""
    assert _rejected(text_message("text/html", html))


def test_a_condition_outlook_does_not_meet_hides_nothing_it_shows() -> None:
    assert not _rejected(text_message("text/html", "<p>via<!--[if !mso]>gra<![endif]--></p>"))
    assert not _rejected(text_message("text/html", "<p>via<!--[if lt mso 12]>gra<![endif]--></p>"))


def test_a_right_to_left_override_in_plain_text_is_read_reversed() -> None:
    assert _rejected(text_message("text/plain", "buy \u202eargaiv\u202c now"))


@pytest.mark.parametrize(
    ("html", "shown"),
    [
        pytest.param("<span hidden style='display:inline'>x</span>", "x", id="css-undoes-hidden"),
        pytest.param("<span style=visibility:hidden>x<b style=visibility:visible>y</b></span>",
                     "y", id="visible-child"),
        pytest.param("<span style=font-size:0>x<b style=font-size:12px>y</b></span>", "y",
                     id="readable-child"),
        pytest.param("<span style=display:none>x</span><b>y</b>", "y", id="ends-at-its-end"),
        pytest.param("<div><b style=display:none>x</div>y", "\n\n", id="reopened-after-div"),
        pytest.param("<table><tr><td><b style=display:none>x</td><td>y", "\n\n\n\n\n\ny",
                     id="not-past-a-cell"),
        pytest.param("<p style=display:none>x<p>y", "\ny", id="p-closed-by-p"),
        pytest.param("<ul><li hidden>x<li>y</ul>", "\n\ny\n\n", id="li-closed-by-li"),
        pytest.param("<span style=display:none>x</div>y</span>z", "z", id="stray-end-tag"),
        pytest.param("<span style='display:none'>x<br>y</span>", "", id="hidden-break"),
        pytest.param("<textarea style=display:none>x</textarea>y", "y", id="hidden-textarea"),
        pytest.param("<textarea>&lt;</textarea><plaintext>&lt;", "<&lt;",
                     id="plaintext-references-as-written"),
        pytest.param("<span style='color:#000'>x</span>", "x", id="ordinary-style"),
        pytest.param("a<table> <tr><td>1</td><td>2</td></tr> </table>b",
                     "a\n \n\n\n1\n\n2\n\n \n\nb", id="table-cells-apart"),
        # In SVG a <style> is no raw text, a CDATA section is text; <b> breaks out.
        pytest.param("<svg><style>x</style><text>vi<![CDATA[a]]><b hidden>x</b>gra</svg>",
                     "viagra", id="svg-style-is-no-raw-text"),
        # Nor is what an SVG <style> holds shown (its sheet, as an HTML one's), up to
        # where it closes: its end tag, the <svg>'s, HTML breaking out. A MathML one is
        # an element MathML does not know, shown as any.
        pytest.param("<svg><style>.x{fill:red}</style></svg>hello", "hello",
                     id="svg-style-not-shown"),
        pytest.param("<math><style>x</style></math>hello", "xhello",
                     id="mathml-style-shown"),
        pytest.param("<svg><style>a<g>b</g><![CDATA[c]]><foreignObject><i>d</i>"
                     "</foreignObject></style></svg>e", "e",
                     id="all-in-svg-style-not-shown"),
        pytest.param("<svg><style>x</svg>hello", "hello", id="svg-style-closed-by-svg-end"),
        pytest.param("<svg><style>x<b>hello</b>", "hello", id="svg-style-closed-by-breakout"),
        # SVG draws text only in a <text> (its <tspan>, <textPath> too), and HTML again
        # in a <foreignObject>; never what a <desc> or <title> holds, HTML there too.
        pytest.param("a<svg>b<g>c<![CDATA[d]]></g>e</svg>f", "af", id="svg-text-outside-text"),
        pytest.param("<svg><text>a<tspan>b<textPath href=#p>c</textPath></tspan><![CDATA[d]]>"
                     "</text></svg>", "abcd", id="svg-text-in-text"),
        pytest.param("<svg><defs>a<linearGradient>b</linearGradient></defs><symbol>c</symbol>"
                     "<metadata>d</metadata></svg>", "", id="svg-text-in-defs"),
        pytest.param("<svg><title>a</title><desc>b<b>c</b><div>d</div><img alt=e></desc>"
                     "<text>f<desc>g</desc></text></svg>", "f", id="svg-desc-title-not-shown"),
        pytest.param("<svg><g><foreignObject width=9 height=9>a<i>b</i><svg>c<text>d</text></svg>"
                     "</foreignObject></g></svg>", "abd", id="svg-foreignobject-shown"),
        pytest.param("<svg height=2><foreignObject style='width:9px;height:9px'>a"
                     "</foreignObject><foreignObject width=9 height=0px>b</foreignObject>"
                     "<svg width=0.0%><text>c</text></svg></svg>", "a", id="svg-sizes"),
        pytest.param("<svg style='height:0;overflow:visible'><text>a</text></svg><svg width=2 "
                     "height=1em><text>b</text></svg>", "ab",
                     id="svg-of-no-size-overflowing-or-large-enough"),
        pytest.param("<svg><text><foreignObject><svg>a</svg></foreignObject></text></svg>", "",
                     id="svg-in-foreignobject-in-text"),
        # In a <text> only its own text and its <tspan>, <textPath>, <a> draw theirs.
        pytest.param("<svg><text>a<a>b<tspan>c</tspan></a><g>d<tspan>e</tspan></g><x>f</x>"
                     "<text>g</text><foreignObject>h<i>i</i></foreignObject>j</text></svg>",
                     "abcj", id="svg-text-draws-only-text-content"),
        pytest.param("<svg><a>a<text>b</text></a><tspan>c</tspan></svg>", "b",
                     id="svg-a-outside-text-draws-none"),
        # Nor does an SVG or MathML element named as an HTML block break a line, close a
        # <p> or show a value; HTML breaking out does.
        pytest.param("<p>a<svg><text>b<section/>c<tspan style=display:block>d</tspan>"
                     "<input value='e'/>f</text></svg>g</p>", "\nabcdfg\n",
                     id="svg-elements-are-no-html-blocks"),
        pytest.param("<math>a<section>b</section><mtext><div>c</div></mtext></math>",
                     "ab\nc\n", id="mathml-elements-are-no-html-blocks"),
        # A block start tag closes no <p> past an element of button scope: a template's
        # content stays in it, inert.
        pytest.param("<p>a<template><div>x</div></template>b</p>", "\nab\n",
                     id="block-in-template-closes-no-p"),
        # An end tag in a template closes nothing outside it: what follows is still in it.
        pytest.param("<div><template></div>a</template>b</div><table><tr><td><template></td>c"
                     "</template></table>", "\nb\n\n\n\n\n\n\n\n\n",
                     id="end-tags-in-a-template-close-nothing-outside"),
        # A <template> in SVG or MathML is an element either does not know, no template:
        # drawn as a <g> (its <text>) or a <mrow>.
        # A <table> where a table is open, not in a cell, ends that table and what was
        # fostered out of it; a formatting element a cell or caption held is not opened
        # again after it.
        pytest.param("<table>a<ul hidden>b<table>c</table><table><caption><b hidden><table>d"
                     "</table><table><tr><td><i hidden></table>e",
                     "a\n\nc\n\n\n\n\n\nd\n\n\n\n\n\n\n\n\n\ne", id="table-in-table-ends-it"),
        # A cell, caption or template marks HTML's list of formatting elements to open
        # again: none a cell or template held is opened after it, nor one closed before it
        # in it (a table's tags open none again), but after it; an <object> opens them
        # before its mark.
        pytest.param("<template><b hidden>a</template>b<table><tr><td><div><i hidden>c</div>"
                     "</td></tr></table>d", "b\n\n\n\n\n\n\n\n\n\nd",
                     id="formatting-elements-held-not-opened-after"),
        pytest.param("<div><b hidden>a</div><table><td>b</table>c<object>d",
                     "\n\n\n\n\n\nb\n\n\n\n", id="formatting-elements-closed-before-not-opened-in"),
        # One a table part's start tag closes (fostered out of the table) is opened again
        # after the table, not in its cell.
        pytest.param("<table><b hidden>a<td>b</table>c", "\n\n\n\nb\n\n\n\n",
                     id="formatting-element-closed-by-a-table-part"),
        # A block's start tag opens none again (text does, in the block): the block's
        # lines show, and a cell in it shows its text.
        pytest.param("a<div><b hidden>b</div><div></div></b>c", "a\n\n\n\nc",
                     id="block-opened-outside-formatting-elements"),
        pytest.param("<div><b hidden>a</div><div><table><td>b</table></div>c",
                     "\n\n\n\n\n\n\nb\n\n\n\n\n", id="cell-in-block-after-formatting-elements"),
        # An HTML element named as an SVG or MathML one that holds HTML bounds no search
        # for a <p> to close.
        pytest.param("<p>a<desc><span hidden>b<div>c", "\na\n\nc", id="html-desc-bounds-no-p"),
        # Outside a table readers ignore a table part's tag: a <caption> there bounds no
        # search for a <p> to close, nor does a <td> close what is open.
        pytest.param("<p>a<span hidden>b<caption>c<li>d</p>e<td>f", "\na\n\nd\n\nef",
                     id="table-parts-ignored-outside-a-table"),
        # A list item's start tag closes the open one past elements that are not special
        # (a span, not a <ul> or an <mi>).
        pytest.param("<li>a<span hidden>b<li>c<ul><li>d<math><mi><li>e", "\na\n\nc\n\nd\ne",
                     id="list-item-closes-past-hidden-span"),
        # A table part's start tag closes what its table holds after the row (a cell's),
        # the table's section (a row's) or the table (a caption's, a section's).
        pytest.param("<table><tr><td><span hidden><td>a</table>", "\n\n\n\n\n\na\n\n\n\n",
                     id="cell-start-closes-hidden-span"),
        pytest.param("<table><caption><div hidden><td>a<tr><td><svg style=display:none><desc>"
                     "<td>b</table>", "\n\n\n\n\n\na\n\n\n\n\n\nb\n\n\n\n",
                     id="table-parts-close-hidden-elements"),
        # A </p> breaking out is an empty <p> in the <foreignObject> that bounds its
        # search, and the hidden <g> is closed all the same.
        pytest.param("<p><svg><foreignObject width=9 height=9><svg><g style=display:none></p>a",
                     "\n\n\na", id="p-end-breaks-out-of-hidden-svg"),
        pytest.param("<svg style=display:none><g>a</br>b<math><mi style=display:none>c<b>d"
                     "</b></mi></math>", "\nb", id="br-end-breaks-out-of-hidden-svg"),
        # Alt text and values are attribute values: a reference without its semicolon
        # before "=" or a letter or digit stays as written there (not in text).
        pytest.param("<img alt='a&notb&not=c&not-d&amp;'><input value=&lt3&gt;>&notb",
                     "a&notb&not=c\xac-d&&lt3>\xacb", id="attribute-values-keep-references"),
        pytest.param("<svg><template><text>a</text></template></svg><math><template>b"
                     "</template></math><template>c</template>", "ab",
                     id="svg-and-mathml-template-shown"),
        pytest.param("a<svg>b<img alt=c>d", "acd", id="svg-closed-by-image-shows-alt"),
        pytest.param("<svg><input value=a></svg>", "", id="svg-input-shows-no-value"),
        pytest.param("<svg><text>a<image alt=b>c</text></svg>", "a", id="svg-image-no-img"),
        # An end tag in SVG goes by HTML's rules once it reaches an HTML element: one
        # of an HTML element open around the svg closes it, unless an element that holds
        # HTML again (<desc>, <foreignObject>) is in between; </body> closes nothing.
        pytest.param("<div><svg><g></div>a", "\n\na", id="svg-closed-by-div-end"),
        pytest.param("<span><svg><g></span>a", "a", id="svg-closed-by-span-end"),
        pytest.param("<div><svg><desc></div>a</desc></svg>", "\n", id="div-end-in-desc"),
        pytest.param("<div><svg><foreignObject width=9 height=9><math></div>a", "\na",
                     id="div-end-in-foreignobject"),
        pytest.param("<svg><g></span>a", "", id="stray-end-tag-in-svg"),
        pytest.param("<svg><g></body>a", "", id="body-end-in-svg"),
        pytest.param("<p><svg><g></p>a", "\n\na", id="svg-closed-by-p-end"),
        pytest.param("<table><tr><td><svg><foreignObject></table>a", "\n\n\n\n\n\n\n\na",
                     id="table-end-past-foreignobject"),
        pytest.param("<p><svg><foreignObject width=9 height=9><svg><g></p>a", "\n\n\na",
                     id="p-end-past-foreignobject"),
        # Nor does it close the <p> past a cell: the table stays open, and the </td> the
        # <desc> holds closes the cell, what follows fostered before the table.
        pytest.param("<p>a<table><td>b</p><svg><desc></td>c</table>d", "\nac\n\n\n\nb\n\n\n\n\n\nd",
                     id="p-end-in-cell-closes-no-table"),
        pytest.param("<math>a<mrow>b<mi>c</mi></mrow></math>", "abc", id="mathml-text-shown"),
        pytest.param("<svg><switch><text requiredExtensions=x>a</text><g><text>b</text></g>"
                     "<text>c</text></switch><switch><text>d</text></switch></svg>", "bd",
                     id="svg-switch-first-child-shown"),
        # A presentation attribute is below any rule of a sheet, and none on HTML.
        pytest.param("<style>tspan{display:inline}</style><svg><text>a<tspan display=none>b"
                     "</tspan></text></svg><span display=none>c</span>", "abc",
                     id="presentation-attribute-below-sheet"),
        # A stroke outlines text SVG fills with nothing; SVG text's colour is its fill's,
        # MathML's its colour; MathML has no presentation attributes.
        pytest.param("<svg><text>a<tspan fill=none stroke=red>b</tspan><tspan style="
                     "color:transparent>c</tspan></text></svg><math><mi display=none>d</mi>"
                     "<mi style=color:transparent>e</mi></math>", "abcd",
                     id="svg-stroke-colour-mathml-attributes"),
        pytest.param("<math><semantics><mi>a</mi><mi>b<mi>c</mi></mi><annotation-xml encoding="
                     "text/html><b>d</b></annotation-xml></semantics><semantics><mi>e</mi>"
                     "</semantics></math>", "ae", id="mathml-semantics-first-child-shown"),
        # Readers' style sheet hides HTML elements with hidden, no SVG or MathML one.
        pytest.param("<svg><text hidden>a<tspan hidden>b</tspan></text></svg><math hidden>"
                     "<mi hidden>c</mi></math><span hidden>d</span>", "abc",
                     id="hidden-attribute-on-html-alone"),
        pytest.param("<svg><text><![CDATA[a<b&amp;]]></text></svg><math><mi><![CDATA[&lt;]]>"
                     "</mi></math>", "a<b&amp;&lt;", id="cdata-text-as-written"),
    ],
)
def test_hidden_text_is_left_out_as_readers_leave_it_out(html: str, shown: str) -> None:
    assert render_visible(html) == shown


@pytest.mark.parametrize(
    "hidden",
    [
        pytest.param("<desc>xyz</desc>", id="desc"),
        pytest.param("<title>x<b>y</b>z</title>", id="title-with-html"),
        pytest.param("<g>xyz</g>", id="group"),
        pytest.param("xyz<text></text>", id="before-text"),
        pytest.param("<defs><linearGradient>xyz</linearGradient></defs>", id="gradient"),
        pytest.param("<defs><text>xyz</text></defs>", id="text-in-defs"),
        pytest.param("<text><textPath>xyz</textPath></text>", id="text-path-without-path"),
        pytest.param("<switch><text systemLanguage=zz>x</text><text/><text>yz</text></switch>",
                     id="switch-draws-one-child"),
        pytest.param("<symbol><text>x</text></symbol><clipPath><text>y</text></clipPath>"
                     "<mask><foreignObject width=9 height=9>z</foreignObject></mask>",
                     id="text-in-what-is-drawn-where-referred-to"),
        pytest.param("<desc><div>xyz</div></desc>", id="block-in-desc"),
        pytest.param("<text><g>xyz</g></text>", id="group-in-text"),
        pytest.param("<text><foreignObject>xyz</foreignObject></text>", id="html-in-text"),
    ],
)
def test_text_svg_does_not_draw_does_not_split_a_word(hidden: str) -> None:
    html = f"<p>via<svg width=2 height=2>{hidden}</svg>gra</p>"
    assert _rejected(text_message("text/html", html))


@pytest.mark.parametrize(
    "html",
    [
        pytest.param("<svg><text>via<section/>gra</text></svg>", id="self-closed-in-text"),
        pytest.param("<p>via<svg width=2 height=2><g><section></section></g></svg>gra</p>",
                     id="closes-no-p"),
        pytest.param("<math>via<article></article>gra</math>", id="in-mathml"),
    ],
)
def test_svg_elements_named_as_html_blocks_do_not_split_a_word(html: str) -> None:
    """Readers lay them out as SVG or MathML: none breaks a line or closes a <p> as an
    HTML block."""
    assert _rejected(text_message("text/html", html))


@pytest.mark.parametrize(
    "html",
    [
        pytest.param("<p>v<math><mtext>i<div style=display:inline>agra</div></mtext></math></p>",
                     id="mathml-text"),
        pytest.param("<p>v<math><mi>i<div style=display:inline>agra</div></mi></math></p>",
                     id="mathml-identifier"),
        pytest.param("<p>v<math><annotation-xml encoding=text/html>i<div style=display:inline>"
                     "agra</div></annotation-xml></math></p>", id="mathml-html-annotation"),
    ],
)
def test_a_block_where_mathml_holds_html_closes_no_p_around_it(html: str) -> None:
    """HTML's search for a ``<p>`` to close (button scope) stops at MathML's text and
    HTML integration points: readers keep the <p> open, and the word whole on its line.
    Closed, its line break split the word."""
    assert _rejected(text_message("text/html", html))


@pytest.mark.parametrize(
    "html",
    [
        pytest.param("vi<svg style=display:none><text>xyz</text><span>agra</span></svg>",
                     id="svg"),
        pytest.param("vi<svg><g style=display:none>xyz<b>agra</b></g></svg>", id="svg-group"),
        pytest.param("vi<math style=display:none><mrow>xyz<i>agra</i></mrow></math>",
                     id="mathml"),
        pytest.param("vi<math><annotation-xml style=display:none>xyz<s>agra</s></annotation-xml>"
                     "</math>", id="mathml-annotation-of-xml"),
    ],
)
def test_html_breaking_out_of_hidden_svg_or_mathml_shows(html: str) -> None:
    """An HTML tag breaking out of SVG or MathML content closes its elements up to the
    last that is HTML or holds it: what a CSS-hidden one held hid it still."""
    assert _rejected(text_message("text/html", html))


def test_a_hidden_keyword_is_still_found() -> None:
    """The rendering with hidden text stays: a rule may look for what spam hides."""
    assert _rejected(text_message("text/html", '<p>hi<span style="display:none">viagra</span></p>'))


def test_ordinary_words_are_not_joined() -> None:
    html = '<p>via <span style="color:#333">gra</span></p><div>via</div><div>gra</div>'
    assert not _rejected(text_message("text/html", html))
    assert not _rejected(text_message("text/plain", "via\u200b gra"))


def test_an_end_tag_br_breaks_the_line_as_readers_break_it() -> None:
    """HTML's tree builder reads ``</br>`` as ``<br>``: readers show "via" and "gra" on
    two lines."""
    assert render_visible("<p>via</br>gra</p>") == render_visible("<p>via<br>gra</p>")
    assert not _rejected(text_message("text/html", "<p>via</br>gra</p>"))


@pytest.mark.parametrize(
    "html",
    [
        pytest.param("via</p>gra", id="no-p"),
        pytest.param("<p>vi<math><mtext>a</p>gra</mtext></math>", id="mathml-text"),
        pytest.param("vi<svg><text>a</p>gra", id="svg"),
        pytest.param("<p>v<svg><foreignObject width=9 height=9>ia</p>gra", id="foreignobject"),
    ],
)
def test_an_end_tag_p_without_its_p_breaks_the_line_as_readers_break_it(html: str) -> None:
    """With no ``<p>`` open in button scope (past an ``<mtext>`` or ``<foreignObject>``),
    HTML's tree builder reads ``</p>`` as ``<p></p>``: readers show "via" and "gra" on
    two lines."""
    assert render_visible(html) == render_visible(html.replace("</p>", "<p></p>"))
    assert not _rejected(text_message("text/html", html))


@pytest.mark.parametrize(
    ("html", "shown"),
    [
        # HTML's "any other end tag" in body: the search from the current element for
        # one of its name stops at a special element (a <div>, a <p>), the tag ignored.
        pytest.param("<span hidden><div>a</span>b", "", id="any-other-past-a-div"),
        pytest.param("<span hidden><p>a</span>b<div>c", "", id="any-other-past-a-p"),
        pytest.param("<span hidden><svg><g></span>x", "x", id="any-other-past-svg"),
        # </div>, </section>, </dd>...: ignored with none of its name in scope (a cell,
        # a table bounds it); else the elements after it close too.
        pytest.param("<div hidden><table><td></div>x", "", id="block-out-of-scope"),
        pytest.param("<section hidden><table><td>a</section>b", "", id="section-past-a-cell"),
        pytest.param("<dl><dt hidden><div>a</dt>b", "b", id="dt-closes-what-it-holds"),
        # </li>: list item scope, which a list bounds too.
        pytest.param("<li hidden><ul><li>a</li>b", "", id="li-past-a-list"),
        # </h1> to </h6>: the last heading open in scope, whatever its number.
        pytest.param("<h1 hidden>a</h2>b", "b", id="heading-of-another-number"),
        pytest.param("<h2 hidden><span>a</h1>b", "b", id="heading-past-a-span"),
        # </body>, </html>: what follows goes where it went before.
        pytest.param("<body style=display:none>x</body>y</html>z", "", id="body-end"),
    ],
)
def test_end_tags_close_what_readers_close(html: str, shown: str) -> None:
    assert render_visible(html).split() == shown.split()


@pytest.mark.parametrize(
    ("html", "shown"),
    [
        # HTML's "in body" insertion mode, a start tag h1 to h6: a heading that is the
        # current element is closed first (whatever its number), one further up is not.
        pytest.param("<h1 hidden>a<h2>b", "b", id="heading-closes-current-heading"),
        pytest.param("<h2 hidden>a<h2>b", "b", id="heading-closes-same-heading"),
        pytest.param("<h1 hidden><span>a<h2>b", "", id="heading-past-a-span-stays"),
        # A start tag button: an open <button> in scope is closed first, with what it
        # holds; one past a cell is not.
        pytest.param("<button hidden>a<span>b<button>c", "c", id="button-closes-button"),
        pytest.param("<button hidden><table><td><button>c", "", id="button-out-of-scope"),
        # A start tag "a": the adoption agency runs for an <a> in the list of active
        # formatting elements after the last marker (open, past a block, or waiting to
        # open again); one before a cell's marker stays.
        pytest.param("<a hidden>a<span>b<a>c", "c", id="a-closes-a"),
        pytest.param("<a hidden>a<div>b<a>c", "c", id="a-adopts-past-a-div"),
        pytest.param("<div><a hidden>a</div><a>b", "b", id="a-forgets-one-waiting"),
        pytest.param("<a hidden><table><td><a>x", "", id="a-before-a-marker-stays"),
        # A start tag "nobr": with a <nobr> open in scope (one waiting to open again
        # opened first), the adoption agency runs for it.
        pytest.param("<nobr hidden>a<span>b<nobr>c", "c", id="nobr-closes-nobr"),
        pytest.param("<nobr hidden>a<div>b<nobr>c", "c", id="nobr-adopts-past-a-div"),
        pytest.param("<div><nobr hidden>a</div><nobr>b", "b", id="nobr-closes-one-reopened"),
        pytest.param("<nobr hidden><table><td><nobr>x", "", id="nobr-out-of-scope-stays"),
    ],
)
def test_start_tags_close_what_readers_close(html: str, shown: str) -> None:
    assert render_visible(html).split() == shown.split()


@pytest.mark.parametrize(
    ("html", "shown"),
    [
        # HTML's adoption agency: a formatting element's end tag with a special element
        # after it moves that out of it (a copy of it inside), then closes the copy, so
        # what follows is in neither (``<b>1<p>2</b>3``: 3 in the <p>, not bold).
        pytest.param("<b hidden><div>a</b>b", "b", id="formatting-past-a-div"),
        pytest.param("<a hidden><p>x<span>y</a>z", "z", id="link-past-a-p-and-span"),
        # The special element stays open, what follows in it (the copy closed).
        pytest.param("<b><div hidden>a</b>b", "", id="moved-element-stays-open"),
        pytest.param("<u><i><p hidden>x</u>y</i>z", "", id="paragraph-stays-open"),
        # The elements between (but formatting ones) no longer hold it.
        pytest.param("<b><span hidden><div>a</b>b", "b", id="span-between-left"),
        pytest.param("<b><span hidden><section><div>a</b>b", "b", id="two-special-after"),
        # A formatting element between is opened again around it: still hidden.
        pytest.param("<b><i hidden><div>a</b>b</i>c", "c", id="formatting-between-kept"),
        # Its loop stops at eight: the copy in the eighth holds the rest.
        pytest.param("<i hidden>" + "<div>" * 7 + "x</i>y", "y", id="seven"),
        pytest.param("<i hidden>" + "<div>" * 8 + "x</i>y", "", id="eight"),
        pytest.param("<i hidden>" + "<div>" * 10 + "x</i>y", "", id="past-eight"),
        # One closed by an end tag of an element around it, waiting to open again, is
        # the last of its name in HTML's list: the end tag forgets it, closes nothing.
        pytest.param("<i hidden><div><i></div></i>x", "", id="one-waiting-to-open"),
    ],
)
def test_a_formatting_end_tag_moves_what_readers_move(html: str, shown: str) -> None:
    assert render_visible(html).split() == shown.split()


@pytest.mark.parametrize(
    ("html", "shown"),
    [
        # HTML's tree builder reads an SVG or MathML element's tag and text as foreign
        # content, which opens no formatting element again ...
        pytest.param("<svg><foreignObject><div><b hidden>x</div></foreignObject><text>y",
                     "y", id="svg-tag-and-text"),
        # ... but where the element holds HTML (a MathML text integration point) ...
        pytest.param("<math><mi><div><b hidden>x</div></mi><mo>y</mo></math>", "",
                     id="mathml-text-holds-html"),
        # ... and in body, an <svg> or <math> tag does ("reconstruct the active
        # formatting elements").
        pytest.param("<p><b hidden>x</p><svg><text>y", "", id="svg-start-tag-in-body"),
    ],
)
def test_formatting_elements_open_again_where_readers_open_them_around_svg(
    html: str, shown: str
) -> None:
    assert render_visible(html).split() == shown.split()


def test_text_in_ascii_has_no_rendering_to_search() -> None:
    """Plain text in ASCII holds no invisible character: nothing is rendered."""
    facts = parse_message(text_message("text/plain", "plain words"), Envelope())
    assert evaluate(body_rule("(?i)viagra"), facts).rules == ()
    assert list(facts.renderings) == []


def test_a_rule_that_matches_the_source_renders_nothing() -> None:
    facts = parse_message(text_message("text/plain", "viagra\u200b"), Envelope())
    renderings = facts.renderings
    assert isinstance(renderings, Renderings)
    assert evaluate(body_rule("(?i)viagra"), facts).rules == ("r",)
    assert renderings._texts is None


ADVERSARIAL = [
    # Formatting elements an end tag closes around them are opened again before the
    # next text: a ladder of them under nested blocks asks for quadratic work.
    pytest.param(lambda n: "<div>" * n + "".join(f"<b c={i}>" for i in range(n))
                 + "x</div>" * n, id="reopening-ladder"),
    pytest.param(lambda n: "<div>" * n + "<b style=display:block>" * n + "x</div>" * n,
                 id="reopening-blocks"),
    pytest.param(lambda n: "<div>" * (4 * n) + "</span>" * (4 * n), id="deep-stray-ends"),
    pytest.param(lambda n: "<p>" + "<b>" * (4 * n) + "<div>x" * n, id="p-search"),
    pytest.param(lambda n: "<span style='display:none'>" * (2 * n) + "x</span>" * (2 * n),
                 id="nested-hidden"),
    pytest.param(lambda n: "<b style='" + "a:b;" * (4 * n) + "'>x" * 2, id="long-style"),
    pytest.param(lambda n: "<span hidden><b>" * n + "<li>" * (2 * n), id="implied-ends"),
    pytest.param(lambda n: "<!--[if mso]><span hidden>" * n, id="unclosed-conditionals"),
    pytest.param(lambda n: "<table><tr><td>x<b style=color:red>y" * n, id="nested-tables"),
    pytest.param(lambda n: "<table>a<i>b" * (2 * n), id="out-of-place-runs"),
    pytest.param(lambda n: "<div>" * n + "<template><p>" * n + "</div>" * n, id="templates"),
    pytest.param(lambda n: "<li>" + "<span>" * n + "<li>a</li>" * n, id="list-items"),
    # What SVG draws changes at each of these tags, nested ever deeper.
    pytest.param(lambda n: "<svg>" + "<g>a<text>b<foreignObject>c<svg>d<desc>e" * n,
                 id="nested-svg"),
]


@pytest.mark.parametrize("build", ADVERSARIAL)
def test_hidden_text_rendering_does_linear_work(
    build: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Elements made (pushed, or opened again) stay within a fixed multiple of the
    HTML's length at every size, so the work is linear in it."""
    made = 0
    element = visiblehtml._Element

    class Counted(element):  # type: ignore[valid-type,misc]
        __slots__ = ()

        def __init__(self, *args: object) -> None:
            nonlocal made
            made += 1
            super().__init__(*args)

    monkeypatch.setattr(visiblehtml, "_Element", Counted)
    for n in (1_000, 16_000):
        html = build(n)  # type: ignore[operator]
        made = 0
        assert len(render_visible(html)) <= len(html)
        assert made <= 2 * len(html), (n, made, len(html))
        assert all(len(view) <= len(html) for view in bodytext.rendering(html_part(0), {}, html))
