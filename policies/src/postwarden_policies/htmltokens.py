"""The HTML tokenizer the body renderings share, as linear regular expressions.

One split by :data:`MARKUP` (possessive quantifiers and atomic groups, no
backtracking) finds
every piece of markup, or by :data:`TOKENS` the same pieces with the parts of
each tag; no tree is built. It follows the HTML standard where a difference
could hide text: a quote opens an attribute value only right after ``=``, so
``<b a"b>`` and ``<b x='>'>`` end where a browser ends them; comments end at
``-->`` (``<!-->`` at once); ``<script>``, ``<style>``, ``<title>``,
``<textarea>`` and the other raw-text elements end only at their own end tag,
whatever their content looks like; an unclosed tag or quote runs to the end.
In SVG and MathML content (:data:`FOREIGN`, :data:`INTEGRATION`) the same tokens are
read as there: none is raw text where a start tag makes an SVG or MathML element, and
``<![CDATA[`` opens text where one is the current element; where that content is,
:mod:`.foreigncontent` tells.

Raw text runs lazily to its end tag, ``.*?(?=</name|\\Z)``, which sre steps through
in constant memory. Not ``(?:[^<]++|<(?!/name))*+``: the Python of Debian 12
(3.11.2) ignores a lookahead in a possessive group after the group's first pass, so
``<textarea>`` ran past its end tag (a later 3.11 fixed it;
tests/test_regex_portability.py keeps such groups out); nor its atomic twin
``(?>(?:...)*)``, which keeps a backtracking point for every pass: 4 MB of ``<`` in a
textarea took over 1 GB.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from html import unescape
from html.entities import html5
from typing import NamedTuple

from .html_precheck import trie

WS = "\t\n\f\r "
# A tag's attributes, as the HTML tokenizer reads them; then its end.
_ATTRIBUTE_LIST = (
    rf"(?:[{WS}/]*+[^{WS}/>][^{WS}/>=]*+"
    rf"(?:[{WS}]*+=[{WS}]*+(?:\"[^\"]*+(?:\"|\Z)|'[^']*+(?:'|\Z)|[^{WS}>]*+))?)*+[{WS}/]*+"
)
_ATTRIBUTES = _ATTRIBUTE_LIST + r"(?:>|\Z)"
_NAME_END = rf"(?=[{WS}/>]|\Z)"
# Raw-text elements left out of the rendering: readers do not show their content
# (title: not in the body), or show it as written (xmp), which the source covers.
_HIDDEN = ("script", "style", "title", "iframe", "noembed", "noframes", "xmp")
RAW = (*_HIDDEN, "textarea", "plaintext")
# Block-level elements: a line break before and after.
BLOCK = (
    "address article aside blockquote br caption center dd details dir div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hr legend li main menu nav ol p "
    "pre section summary table tbody td tfoot th thead tr ul"
).split()


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """``text`` with A to Z lower-cased and nothing else, as HTML and CSS compare names
    and keywords: str.lower() also turns the Kelvin sign into "k", so ``<lin\u212a>``
    read as a void <link> and ``blac\u212a`` as a colour, where readers see neither."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def _caseless(char: str) -> str:
    """One character of a tag name, ASCII case-insensitively as the tokenizer reads it.

    Character classes rather than ``(?i)``: sre runs them several times faster here.
    """
    return f"[{char}{char.upper()}]" if char.isalpha() else re.escape(char)


def _names(words: Iterable[str]) -> str:
    """Exactly these tag names, then the end of the name; the first letter is looked
    at before the prefix tree, which sre would try branch by branch."""
    first = "".join(sorted({case(word[0]) for word in words for case in (str.lower, str.upper)}))
    return f"(?=[{first}]){trie(words, _caseless)}{_NAME_END}"


def _raw_text(name: str, keep: bool) -> str:
    """A raw-text element's start tag and content, up to its own end tag."""
    content = rf"(?>.*?(?=</{_names([name])}|\Z))"
    return rf"{_names([name])}{_ATTRIBUTES}{f'({content})' if keep else content}"




def _not_a_tag(section: str = "") -> str:
    """A comment, doctype, bogus comment or processing instruction: no tag; ``section``
    an alternative for what follows "<!" (a CDATA section)."""
    return rf"!(?:--(?:-?>|.*?(?:--!?>|\Z))|{section}[^>]*+(?:>|\Z))|\?[^>]*+(?:>|\Z)"


def _cdata() -> str:
    """A CDATA section (text up to "]]>"), its text in the group cdata; an alternative
    for :func:`_not_a_tag`."""
    return r"\[CDATA\[(?P<cdata>(?>.*?(?=\]\]>|\Z)))(?:\]\]>|\Z)|"


_TAG_NAME = rf"[a-zA-Z][^{WS}/>]*+"
_TAG = rf"{_TAG_NAME}{_ATTRIBUTES}"


def _markup(raw_text: bool, cdata: bool) -> re.Pattern[str]:
    """Every piece of markup, where HTML's tokenizer reads raw text or not (SVG or
    MathML content), and CDATA sections or not. re.split keeps the groups: the ">"
    ending a block-level tag, start or end (no raw-text element is one), turned into
    a line break afterwards, and the text readers show: of raw text, a textarea's
    content and all that follows a <plaintext> tag; a CDATA section's (the group
    cdata). re.split runs no Python code per tag, which a replacement function or a
    group template would."""
    raw = (rf"(?={_names(RAW)})(?:"
           + "|".join(_raw_text(name, keep=False) for name in _HIDDEN)
           + rf"|{_raw_text('textarea', keep=True)}"
           + rf"|{_names(['plaintext'])}{_ATTRIBUTES}(?P<plaintext>.*))|"
           if raw_text else "")
    return re.compile(
        f"<(?:{_not_a_tag(_cdata() if cdata else '')}"
        rf"|/?{_names(BLOCK)}{_ATTRIBUTE_LIST}(>|\Z)"
        rf"|/(?:{_TAG}|[^>]*+(?:>|\Z))"
        rf"|(?=[a-zA-Z])(?:{raw}{_TAG})"
        ")",
        re.DOTALL,
    )


MARKUP = _markup(raw_text=True, cdata=False)
# The pieces of MARKUP, split into what visiblehtml reads of a tag: an end tag's name;
# a start tag's name and attributes. A raw-text element's content goes with its start
# tag as in MARKUP: up to an end tag of the name the start tag has (ASCII letters in
# any case; the last group), or, a <plaintext>'s, to the end; the two empty groups
# before the name tell which. re.split makes no match object per tag: twice as fast as
# re.finditer here.
_END_TAG = rf"/(?:(?P<end>{_TAG_NAME}){_ATTRIBUTES}|[^>]*+(?:>|\Z))"
_START_TAG = rf"(?P<name>{_TAG_NAME})(?P<attributes>{_ATTRIBUTE_LIST})(?:>|\Z)"


def _tokens(raw_text: bool, cdata: bool) -> re.Pattern[str]:
    """TOKENS as HTML's tokenizer reads on where raw text is read (or not: a start
    tag there makes an SVG or MathML element, what follows a <style> or <title> is
    tags) and CDATA sections (their text: the group cdata). Each has the same groups
    (a split reads them alike), those of what it does not read never set."""
    raw = f"(?={_names(RAW)})" if raw_text else "(?!)"
    return re.compile(
        f"<(?:{_not_a_tag(_cdata() if cdata else '(?P<cdata>(?!))|')}|{_END_TAG}"
        rf"|(?:{raw}(?:(?={_names(['plaintext'])})(?P<plaintext>)|(?P<raw>))|)"
        rf"{_START_TAG}"
        rf"(?P<content>(?(plaintext).*|(?(raw)(?>.*?(?=</(?ai:(?P=name)){_NAME_END}|\Z))))))",
        re.DOTALL)


TOKENS = _tokens(raw_text=True, cdata=False)
# A <style> tag wherever it is and the raw text after it, up to where MARKUP would end
# the element: one search tells whether HTML has a sheet at all, and where the last one
# ends at the latest (foreigncontent.style_sheets reads them as the tokenizer does). The
# lazy .*? costs some 60 ns a character (a 4 MB sheet: a quarter of a second); a loop
# over runs without "<" was twenty times faster, but not in constant memory.
_STYLE = _names(["style"])
STYLE_SHEET = re.compile(rf"<{_STYLE}{_ATTRIBUTES}((?>.*?(?=</{_STYLE}|\Z)))", re.DOTALL)
# One attribute in a tag's attributes: its name and its value as written, quotes and all.
ATTRIBUTE = re.compile(
    rf"[{WS}/]*+([^{WS}/>][^{WS}/>=]*+)"
    rf"(?:[{WS}]*+=[{WS}]*+(\"[^\"]*+\"?|'[^']*+'?|[^{WS}>]*+))?"
)


# A character reference as html.unescape finds one.
_REFERENCE = re.compile(r"&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
_LONGEST_LEGACY = max(len(name) for name in html5 if not name.endswith(";"))


def attribute_value(written: str) -> str:
    """An attribute's value as :data:`ATTRIBUTE` finds it written (its quotes, if any,
    and all), as readers read it: unquoted and unescaped."""
    quote = written[:1] if written[:1] in ("'", '"') else ""
    return attribute_unescape(written.removeprefix(quote).removesuffix(quote))


def attribute_unescape(value: str) -> str:
    """An attribute ``value`` with its character references decoded as HTML's tokenizer
    decodes them there: a named one without its semicolon (``&not``) followed by "=" or
    an ASCII letter or digit stays as written (``alt="a&notb"`` shows ``a&notb``, which
    html.unescape made ``a\xacb``); elsewhere as in text."""
    return _REFERENCE.sub(_attribute_reference, value) if "&" in value else value


def _attribute_reference(found: re.Match[str]) -> str:
    reference = found.group()
    if reference[1] == "#" or reference[1:] in html5:  # numeric, or whole with its ";"
        return unescape(reference)
    name = reference[1:]
    for length in range(min(len(name), _LONGEST_LEGACY), 1, -1):  # the longest legacy one
        if name[:length] in html5:
            after = name[length : length + 1]
            kept = after == "=" or (after.isascii() and after.isalnum())
            return reference if kept else html5[name[:length]] + name[length:]
    return reference


class Reading(NamedTuple):
    """How HTML's tokenizer reads on, as :data:`TOKENS` and as :data:`MARKUP` split it."""

    tokens: re.Pattern[str]
    markup: re.Pattern[str]


HTML = Reading(TOKENS, MARKUP)
# Where a start tag makes an SVG or MathML element (HTML's foreign content): no raw
# text, CDATA sections.
FOREIGN = Reading(_tokens(raw_text=False, cdata=True), _markup(raw_text=False, cdata=True))
# Where one holds HTML again (<foreignObject>, <mi>) and is the current element.
INTEGRATION = Reading(_tokens(raw_text=True, cdata=True), _markup(raw_text=True, cdata=True))
