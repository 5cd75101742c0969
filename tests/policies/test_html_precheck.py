"""The allowlist proof that lets clean HTML skip nh3, checked against nh3 itself."""

from __future__ import annotations

import itertools
from collections import Counter

import nh3
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from postwarden_policies import sanitize
from postwarden_policies.html_allowlist import (
    ATTRIBUTE_VALUES,
    ATTRIBUTES,
    DROP_WITH_CONTENT,
    TAGS,
    HtmlOptions,
)
from postwarden_policies.html_precheck import needs_no_sanitizing

SCHEMES = frozenset({"http", "https", "mailto", "cid"})
KEEP = HtmlOptions("keep", SCHEMES)
STRIP = HtmlOptions("strip", SCHEMES)
ONLY_HTTPS = HtmlOptions("keep", frozenset({"https"}))

NEWSLETTER = (
    "<!DOCTYPE html>\n<html><head><title>News</title></head><body>\n"
    '<table width="600" cellpadding="0" cellspacing=0>\n'
    '<tr><td style="padding:8px;font-family:Arial,sans-serif;font-style:italic;color:#333">'
    '<a href="https://news.example.org/item/1?utm_source=mail&amp;x=1" target="_blank">'
    "Item 1</a> <b>offer</b> &amp; <i>more</i> &gt; less</td>"
    '<td><IMG SRC="https://cdn.example.org/img/1.png" alt="item 1" width="80"/></td></tr>\n'
    '<tr><td colspan="2"><a href="mailto:news@example.org">Unsubscribe</a> '
    '<a href="#top">top</a> <img src="cid:logo@example.org"><br></td></tr>\n'
    "</table></body></html>"
)


@pytest.mark.parametrize("options", [KEEP, ONLY_HTTPS], ids=["keep", "only-https"])
def test_a_plain_newsletter_needs_no_nh3(options: HtmlOptions) -> None:
    html = NEWSLETTER
    if options is ONLY_HTTPS:
        html = html.replace("mailto:news@", "https://").replace("cid:logo@", "https://")
    assert needs_no_sanitizing(html, options)
    assert sanitize._clean(html, options)[1] == ()  # nh3 agrees


@pytest.mark.parametrize(
    "html",
    [
        "<script>alert(1)</script>",
        "<p onclick=x()>a</p>",
        '<img src=x onerror="alert(1)">',
        '<a href="javascript:alert(1)">a</a>',
        '<a href="JaVaScRiPt:alert(1)">a</a>',
        '<a href=" javascript:alert(1)">a</a>',
        '<a href="java&#x0A;script:x">a</a>',
        '<a href="jav&#x61;script:x">a</a>',
        '<a href="&#x6a;avascript:x">a</a>',
        "<a href=javascript:x>a</a>",
        '<a href="data:text/html,<script>x</script>">a</a>',
        '<img src="data:image/svg+xml,x">',
        '<a href="vbscript:x">a</a>',
        '<a href="//evil.example/">a</a>',
        '<a href="https://a.example&#x40;evil.example/">a</a>',
        '<a href="https://xn--zz.example/">a</a>',
        '<a href="https://1.2.3.999/">a</a>',
        '<a href="https://exa mple.org/">a</a>',
        '<a href="https://a.example:99999/">a</a>',
        '<p style="background:url(https://t.example/p.gif)">a</p>',
        '<p style="background: u\\72l(x)">a</p>',
        '<p style="width: expr/**/ession(alert(1))">a</p>',
        '<p style="behavior: url(x.htc)">a</p>',
        '<p style="x: java script:x">a</p>',
        '<p style="-moz-binding: url(x)">a</p>',
        '<p style="color: &#92;72 ed">a</p>',
        '<p style="@import \'x\'">a</p>',
        "<p style=color:red>a</p>",
        "<!-- hidden --><p>a</p>",
        "<!--[if mso]><p>a</p><![endif]-->",
        "<![CDATA[x]]>",
        "<?xml version='1.0'?><p>a</p>",
        "<svg><script>x</script></svg>",
        "<math><mi>x</mi></math>",
        '<title></title><script>x</script>',
        '<title><a title="</title><script>x()</script>">t</a></title>',
        "<p/onclick=x>a</p>",
        '<a href="https://a.example/"onclick="x">a</a>',
        "<p\x0bonclick=x>a</p>",
        "<\u212abd>x</\u212abd>",
        "<\u0130mg src=x>",
        "<image src=https://a.example/x.png>",
        "<form><input></form>",
        "<iframe srcdoc='x'></iframe>",
        "<body onload=x()>",
        '<html lang="en"><p>a</p>',
        "<meta http-equiv=refresh content='0;url=https://evil.example/'>",
        "<base href=https://evil.example/>",
        "<p>a</p>\x00<script>x</script>",
        "a < b",
        "</ p>",
        "<p title=a=b>x</p>",
        # A URL ending in "style=" must not hide the real style value.
        '<a href="https://a.example/?style=" style="background:url(http:evil.example)">x</a>',
        "<a href='#style=' style='width:expression(alert(1))'>x</a>",
        '<img src="cid:x?style=" style="background-image:url(https:evil.example)">',
        '<a href="mailto:a@b.example?style=" target=_blank style="-moz-binding:url(x.xml)">x</a>',
        # No authority after an opaque scheme, written or hidden behind a newline.
        '<a href="cid://:w">x</a>',
        '<a href="cid://evil.example/x">x</a>',
        '<a href="mailto:&#x0a;//:1:a">x</a>',
    ],
)
def test_hostile_or_unusual_html_goes_to_nh3(html: str) -> None:
    assert not needs_no_sanitizing(html, KEEP)


def test_remote_images_need_nh3_when_they_are_stripped() -> None:
    html = '<img src="https://t.example/p.gif"><img src="cid:a">'
    assert needs_no_sanitizing(html, KEEP)
    assert not needs_no_sanitizing(html, STRIP)
    assert needs_no_sanitizing('<img src="cid:a"><a href="https://a.example/">x</a>', STRIP)


def test_only_the_allowed_schemes_are_taken_on_trust() -> None:
    assert needs_no_sanitizing('<a href="https://a.example/">x</a>', ONLY_HTTPS)
    assert not needs_no_sanitizing('<a href="http://a.example/">x</a>', ONLY_HTTPS)
    assert not needs_no_sanitizing('<a href="mailto:a@b.example">x</a>', ONLY_HTTPS)


def test_a_host_label_is_taken_on_trust_unless_it_is_an_a_label() -> None:
    # "Not xn--" is spelled out in the grammar (RE2 has no lookahead): every
    # label of up to five characters from the letters that matter.
    for label in map("".join, itertools.chain.from_iterable(
        itertools.product("xn-a0", repeat=n) for n in range(1, 6)
    )):
        inner = needs_no_sanitizing(f'<a href="https://{label}.example.org/">x</a>', KEEP)
        assert inner == (not label.startswith("xn--")), label
        last = needs_no_sanitizing(f'<a href="https://example.{label}">x</a>', KEEP)
        assert last == (label[0].isalpha() and not label.startswith("xn--")), label


def test_what_nh3_may_still_change_is_harmless() -> None:
    # The tree builder drops a misplaced allowed tag and the second of two equal
    # attributes; both are allowed, so the part can stay as it is.
    stray = "<td>x</td>"
    twice = '<a href="https://a.example/" href="https://b.example/">x</a>'
    assert needs_no_sanitizing(stray, KEEP) and needs_no_sanitizing(twice, KEEP)
    assert sanitize._clean(stray, KEEP)[1] == (("td", 1),)
    assert sanitize._clean(twice, KEEP)[1] == (("@href", 1),)


# --- generated documents: whatever the proof accepts, the allowlist removes nothing ----

_NAMES = sorted(TAGS) + (
    "html head title body script style svg math iframe object form input image textarea "
    "noscript xmp plaintext select template meta link base frameset"
).split()
_ATTRIBUTE_NAMES = sorted(set().union(*ATTRIBUTES.values())) + (
    "onclick onerror onload srcdoc formaction xlink:href background data-x id rel".split()
)
_VALUES = [
    "x", "a b", "a=b", "80", "#333", "_blank", "cite", "</title><script>x()</script>", "a>b",
    "'", '"',
    "https://a.example/p?q=1&amp;r=2", "http://b.example:8080/", "https://a.example",
    "mailto:a@b.example", "cid:part@x", "#top", "/rel", "x.html", "//evil.example/",
    "javascript:x()", "JavaScript:x", " javascript:x", "java&#x0a;script:x", "jav&#x61;script:x",
    "data:text/html,x", "data:image/png;base64,AA", "vbscript:x", "https://xn--zz.example/",
    "https://1.2.3.999/", "https://exa mple.org/", "https://a.example&#x40;b.example/",
    "color:red", "font-style:italic; color: #333", "position:fixed", "background:url(x)",
    "width:expression(alert(1))", "behavior:url(x.htc)", "x:java script:y", "-moz-binding:url(x)",
    "u\\72l(x)", "color:/**/red", "color:&#92;72", "@import 'x'", "color:red !important",
    "expr ession(x)", "https://a.example/?style=", "#style=", "cid:x?style=",
    "background:url(http:evil.example)", "cid://:w", "cid://evil.example/x",
    "mailto:&#x0a;//:1:a",
]
_TEXT = [
    "hello", " ", "\n", "a < b", "&lt;script&gt;", "x > y", "&amp;", 'style="',
    " style='color:red' ", "\x00", "&#60;script&#62;", "=", "'", '"',
]
_RAW = [
    "<!-- x -->", "<!--[if mso]>x<![endif]-->", "<![CDATA[x]]>", "<?xml x?>", "<!DOCTYPE html>",
    "</p>", "</td>", "</ script>", "< p>", "<p/x>", "<\u212abd>", "<\u0130mg src=x>", "</title>",
]
_SEPARATORS = [" ", "\t", "\n", "  ", "/", "", "\x0b"]


def _case(draw: st.DrawFn, text: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in text)


@st.composite
def _tag(draw: st.DrawFn) -> str:
    name = _case(draw, draw(st.sampled_from(_NAMES)))
    attributes = draw(st.lists(st.sampled_from(_ATTRIBUTE_NAMES), max_size=4, unique=True))
    parts = [f"<{name}"]
    for attribute in attributes:
        parts.append(draw(st.sampled_from(_SEPARATORS)) + _case(draw, attribute))
        if draw(st.integers(0, 5)):
            value = draw(st.sampled_from(_VALUES))
            quote = draw(st.sampled_from(['"', "'", ""]))
            parts.append(draw(st.sampled_from(["=", " = "])) + quote + value + quote)
    parts.append(draw(st.sampled_from([">", "/>", " >", "\n>"])))
    return "".join(parts)


_URLS = [v for v in _VALUES if v.startswith(("http", "mailto", "cid", "#", "/", " ", "j", "d"))]
_URL_TAILS = ["", "?style=", "#style=", "?a=b", "?x='", '?x="', "/style", "&amp;style="]
_STYLES = [v for v in _VALUES if ":" in v and not v.startswith(("http", "mailto", "cid"))]


@st.composite
def _link_or_image(draw: st.DrawFn) -> str:
    """A URL and a style on one tag, in any order and quoting: where a URL's
    tail could be read as the start of the style attribute."""
    tag = draw(st.sampled_from(["a", "area", "img"]))
    url = "src" if tag == "img" else "href"
    names = [url, "style", *draw(st.lists(st.sampled_from(["title", "class", "target"]),
                                          max_size=2, unique=True))]
    parts = []
    for name in draw(st.permutations(names)):
        if name == url:
            value = draw(st.sampled_from(_URLS)) + draw(st.sampled_from(_URL_TAILS))
        else:
            value = draw(st.sampled_from(_STYLES if name == "style" else _VALUES))
        quote = draw(st.sampled_from(['"', "'", ""]))
        parts.append(f" {name}={quote}{value}{quote}")
    return f"<{tag}{''.join(parts)}>x"


_DOCUMENTS = st.lists(
    st.one_of(
        _tag(),
        _link_or_image(),
        st.sampled_from(_NAMES).map(lambda name: f"</{name}>"),
        st.sampled_from(_TEXT),
        st.sampled_from(_RAW),
    ),
    max_size=12,
).map("".join)


# nh3 with every generated attribute and scheme allowed: what it still removes is
# the tree builder's doing (a <td> or <tbody> outside a table, with its attributes).
# The attributes allowed with some values only (a link's target="_blank"), as the
# sanitizer allows them: without, such a link was taken for one the allowlist changed.
_ALLOWED_VALUES = {tag: {name: set(values) for name, values in allowed.items()}
                   for tag, allowed in ATTRIBUTE_VALUES.items()}
# Every generated attribute with any value, but where a tag allows some values only
# (nh3 refuses a name allowed both ways, as a blockquote's type would be).
_ANY_VALUE = {tag: set(_ATTRIBUTE_NAMES) - set(_ALLOWED_VALUES.get(tag, {})) for tag in TAGS}
_TREE_BUILDER_ONLY = nh3.Cleaner(
    tags=set(TAGS),
    clean_content_tags=set(DROP_WITH_CONTENT),
    attributes=_ANY_VALUE,
    tag_attribute_values=_ALLOWED_VALUES,
    url_schemes={"http", "https", "mailto", "cid", "javascript", "data", "vbscript"},
    link_rel=None,
    strip_comments=True,
)
# The same, with a title's text kept as text: a link or image inside a title is no
# link (raw text up to "</title>", to the end when it is never closed), and both
# cleaners drop it with the title; one elsewhere that the URL parser could not read
# is dropped here too.
_TITLE_AS_TEXT = nh3.Cleaner(
    tags=set(TAGS),
    clean_content_tags=set(DROP_WITH_CONTENT) - {"title"},
    attributes=_ANY_VALUE,
    tag_attribute_values=_ALLOWED_VALUES,
    url_schemes={"http", "https", "mailto", "cid", "javascript", "data", "vbscript"},
    link_rel=None,
    strip_comments=True,
)


@settings(max_examples=1500, deadline=None)
@given(html=_DOCUMENTS, options=st.sampled_from([KEEP, STRIP, ONLY_HTTPS]))
# Links inside a title: dropped by both cleaners, as text, not as unreadable URLs.
@example(html='<title><a href="https://a.example/">x', options=KEEP)
@example(html='<TITLE><img src="cid:part@x"></title><a href="#top">x</a>', options=STRIP)
@example(html='<a href="#333" style="vbscript:x" target="_blank">x', options=KEEP)
def test_what_the_proof_accepts_nh3_leaves_alone(html: str, options: HtmlOptions) -> None:
    if needs_no_sanitizing(html, options):
        removed = sanitize._clean(html, options)[1]
        folded = html.lower()
        by_tree = sanitize._removed(folded, _TREE_BUILDER_ONLY.clean(html).lower(), Counter())
        assert removed == by_tree, html  # the allowlist took nothing the tree builder left
        # A link or image the parser could not read would be dropped by both.
        unread = sanitize._removed(folded, _TITLE_AS_TEXT.clean(html).lower(), Counter())
        assert not {"@href", "@src"} & {name for name, _ in unread}, html


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    "<p>", "</p>", "<b>bold</b>", "text &amp; more", '<a href="https://a.example/x?y=1">a</a>',
    '<td style="color: red; font-style: italic">', "</td>", '<img src="cid:x" alt="x">', "<br/>",
    '<font face="Arial" size=2>', "</font>", "<table cellpadding=0>", "</table>", "<tr>", "</tr>",
]), max_size=20).map("".join))
def test_allowlisted_documents_are_recognised(html: str) -> None:
    assert needs_no_sanitizing(html, KEEP)


@pytest.mark.parametrize("target", ["mailview2", "_self", "_top", "_parent"])
def test_a_link_opening_another_window_goes_through_nh3_for_its_target(target: str) -> None:
    """Browsers imply noopener for target="_blank" only; nh3 keeps no other target."""
    html = f'<a href="https://news.example.org/" target="{target}">Open</a>'
    assert not needs_no_sanitizing(html, KEEP)
    assert sanitize.sanitize_html(html, KEEP)[0] == '<a href="https://news.example.org/">Open</a>'
    assert needs_no_sanitizing(html.replace(target, "_blank"), KEEP)
    assert needs_no_sanitizing(html.replace(target, "_BLANK"), KEEP)
