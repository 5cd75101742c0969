"""Body rules see a word a sender split with text readers cannot see: text in the
colour of the background behind it, and text placed off the screen or clipped to
nothing.
"""

from __future__ import annotations

import pytest

from .policy_helpers import body_rule_matches, text_message


def _rejected(html: str) -> bool:
    return body_rule_matches("(?i)viagra", text_message("text/html", html))


@pytest.mark.parametrize(
    "html",
    [
        pytest.param('<body bgcolor="#FFFFFF"><p>via<font color="white">xyz</font>gra',
                     id="font-on-bgcolor"),
        pytest.param("<body bgcolor=ffffff><p>via<font color=ffffff>xyz</font>gra",
                     id="attribute-hex-without-hash"),
        # Colour attributes are read by HTML's legacy rules, which make any value one.
        pytest.param('<body bgcolor=white><p>via<font color="#fff fff fff">xyz</font>gra',
                     id="attribute-legacy-colour"),
        pytest.param('<table bgcolor="chucknorris"><tr><td>via<font color="#c00000">xyz'
                     "</font>gra", id="attribute-legacy-colour-name"),
        pytest.param('<div style="background-color:#000">via<span style="color:black">xyz'
                     "</span>gra</div>", id="css-background-color"),
        pytest.param('<div style="background:#fff no-repeat">via<b style="color:rgb(255,255,'
                     '255)">xyz</b>gra</div>', id="background-shorthand-rgb"),
        pytest.param('<div style="background:white">via<b style="color:hsl(0,0%,100%)">xyz'
                     "</b>gra</div>", id="hsl"),
        pytest.param('<div style="background:#ffffff">via<b style="color:#fefefe">xyz</b>gra'
                     "</div>", id="all-but-the-same"),
        pytest.param("<table bgcolor=red><tr><td>via<b style=color:red>xyz</b>gra</td></tr>"
                     "</table>", id="cell-in-a-coloured-table"),
        pytest.param('<p>via<b style="color:#ccc;background:#ccc">xyz</b>gra</p>',
                     id="own-background"),
        pytest.param("<style>body{background:#fff} .h{color:#fff}</style><body><p>via"
                     '<span class="h">xyz</span>gra', id="from-a-sheet"),
        pytest.param('<p>via<span style="position:absolute;left:-9999px">xyz</span>gra</p>',
                     id="absolute-far-left"),
        pytest.param('<p>via<span style="position:fixed;top:-100em">xyz</span>gra</p>',
                     id="fixed-far-up-in-em"),
        pytest.param('<p>via<span style="position:relative;left:-5000px">xyz</span>gra</p>',
                     id="relative-far-left"),
        pytest.param('<p>via<span style="position:absolute;clip:rect(0 0 0 0)">xyz</span>gra',
                     id="clip-rect-zero"),
        pytest.param('<p>via<span style="position:absolute;clip:rect(1px,1px,1px,1px)">xyz'
                     "</span>gra", id="clip-rect-one-pixel-edges"),
        pytest.param('<p>via<span style="display:inline-block;text-indent:-9999px">xyz'
                     "</span>gra", id="text-indent"),
        pytest.param('<p>via<span style="clip-path:inset(50%)">xyz</span>gra', id="inset-50"),
        pytest.param('<p>via<span style="clip-path:circle(0)">xyz</span>gra', id="circle-0"),
        # A link, <mark> and form controls have colours of their own: the part of the
        # word they hold shows, whatever colour is around them.
        pytest.param('<div style="background:#000">via<span style="display:none">xyz</span>'
                     '<font color=black><a href="https://x.example/">gra</a></font></div>',
                     id="link-in-the-background-colour"),
        pytest.param('<div style="background:#ff0">via<span style="display:none">xyz</span>'
                     '<font color="#ff0"><mark>gra</mark></font></div>', id="mark"),
        # Names and keywords are compared ASCII case-insensitively, as readers do: the
        # Kelvin sign makes no <link> and no "black".
        pytest.param('<p>via<lin\u212a style="display:none">xyz</lin\u212a>gra',
                     id="kelvin-sign-tag-name"),
        # A shadow, an outline, a fill or a filter paints the text otherwise.
        pytest.param('<div style="background:#000">via<span style="display:none">xyz</span>'
                     '<span style="color:#000;text-shadow:0 0 2px #fff">gra</span></div>',
                     id="text-shadow"),
        pytest.param('<div style="background:#fff">via<span style="display:none">xyz</span>'
                     '<span style="color:#fff;filter:invert(1)">gra</span></div>', id="filter"),
        # An <a> without href is no link: it has the colour around it.
        pytest.param('<body bgcolor=white>via<font color=white><a hreflang=en>xyz</a></font>'
                     'gra', id="a-without-href"),
        # What follows <plaintext> shows, as it is.
        pytest.param('via<span style="display:none">xyz</span><plaintext style='
                     'display:inline>gra', id="plaintext"),
        pytest.param('<p>via<span style="display:none">xyz</span><span style="background:'
                     'blac\u212a;color:#000">gra</span>', id="kelvin-sign-colour-name"),
    ],
)
def test_text_readers_cannot_see_inside_a_word_does_not_hide_it(html: str) -> None:
    assert _rejected(html)


@pytest.mark.parametrize(
    "html",
    [
        pytest.param('<p>via<font color="white">xyz</font>gra', id="no-background-set"),
        pytest.param("<body bgcolor=ffffff><p>via<font color=fff>xyz</font>gra",
                     id="three-digits-without-a-hash-near-black"),
        pytest.param('<div style="background:#000">via<font color=black><a href="https://x.'
                     'example/">xyz</a></font>gra</div>', id="a-link-has-its-own-colour"),
        pytest.param('<div style="background:url(x.png) #fff">via<b style="color:#fff">xyz'
                     "</b>gra</div>", id="over-an-image"),
        pytest.param('<div style="background:#fff">via<b style="color:#eee">xyz</b>gra</div>',
                     id="light-grey-on-white"),
        pytest.param('<div style="background:#fff">via<b style="color:#fff;background:#000">'
                     "xyz</b>gra</div>", id="own-background-differs"),
        pytest.param('<div style="background:transparent">via<b style="color:#000">xyz</b>'
                     "gra</div>", id="transparent-background"),
        pytest.param('<p>via<span style="left:-9999px">xyz</span>gra', id="static-position"),
        pytest.param('<p>via<span style="position:absolute;left:-20px">xyz</span>gra',
                     id="a-little-left"),
        pytest.param('<p>via<span style="clip:rect(0 0 0 0)">xyz</span>gra', id="clip-static"),
        pytest.param('<p>via<span style="position:absolute;clip:rect(auto,auto,auto,auto)">'
                     "xyz</span>gra", id="clip-auto"),
        pytest.param('<p>via<span style="clip-path:inset(10%)">xyz</span>gra', id="inset-10"),
    ],
)
def test_text_readers_see_is_not_left_out(html: str) -> None:
    assert not _rejected(html)


def test_a_child_in_another_colour_shows() -> None:
    html = ('<div style="background:#fff">vi<b style="color:#fff">xyz<i style="color:#000">'
            "agr</i>xyz</b>a</div>")
    assert _rejected(html)
    assert not _rejected(html.replace("#000", "#fff"))
