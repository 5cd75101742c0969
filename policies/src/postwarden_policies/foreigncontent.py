"""How HTML's tree builder, which tells its tokenizer how to read on, reads the tags
of SVG and MathML content (foreign content): there a ``<style>``, ``<title>``,
``<script>`` or ``<textarea>`` is no raw text, ``<![CDATA[`` opens text, a
``<template>`` is no template, until an HTML tag breaks out or an integration point
(``<foreignObject>``, ``<mi>``) holds HTML again. Read by the sanitizer (the tags it
carries to the page, what it counts removed) and by the renderings of text body rules
search (:mod:`.bodytext`, :mod:`.visiblehtml`).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator
from html import unescape as html_unescape

from .html_cost import BREAKOUT, FONT_BREAKS, HTML_ENCODINGS, MATHML_TEXT, SVG_POINTS, VOID
from .htmltokens import (
    ATTRIBUTE,
    FOREIGN,
    HTML,
    INTEGRATION,
    STYLE_SHEET,
    Reading,
    ascii_lower,
    attribute_value,
)

# Where an <svg> or <math> start tag may be ("<sag" too): elsewhere all is read as
# HTML, at once. Without an alternation sre scans for it ten times as fast (under a
# nanosecond a character).
_FOREIGN_START = re.compile("<[sSmM][vVaA][gGtT]")


def tag_attributes(tag: re.Match[str], names: frozenset[str]) -> dict[str, str]:
    """The attributes ``names`` of ``tag`` (a :data:`.htmltokens.TOKENS` start tag) as
    readers read them: by HTML's tokenizer (a value that holds "bgcolor=black" or
    "href=..." sets none), the first of a name, values unescaped; names with A to Z
    alone lower-cased (str.lower() also folds the Kelvin sign)."""
    return _attribute_values(tag.group("attributes"), names)


def _attribute_values(attributes: str, names: frozenset[str]) -> dict[str, str]:
    """The attributes ``names`` among ``attributes`` (a start tag's, as written), as
    :func:`tag_attributes` reads them."""
    found: dict[str, str] = {}
    for name, value in ATTRIBUTE.findall(attributes):
        if (name := ascii_lower(name)) in names:
            found.setdefault(name, attribute_value(value))
    return found


def tag_name(found: re.Match[str]) -> str | None:
    """The name of a tag :data:`.htmltokens.TOKENS` found, A to Z lower-cased, "/" before
    an end tag's; None for a comment or the like."""
    if (name := found.group("name")) is not None:
        return ascii_lower(name)
    return None if (end := found.group("end")) is None else "/" + ascii_lower(end)


def document_tags(html: str) -> Iterator[tuple[str, re.Match[str]]]:
    """:func:`_tags` of HTML elements outside a ``<template>``, whose content readers keep
    out of the document: a ``<body>``, ``<html>`` or ``<base>`` there sets nothing (a
    ``<body bgcolor=black text=black>`` in one coloured the page). Inside ``<svg>`` or
    ``<math>`` a tag is an SVG or MathML element, but where HTML's tree builder reads HTML
    again (:class:`_OpenElements`): a ``<template>`` there is none (taken for one, it hid
    the ``<body>`` or ``<base>`` after it), nor is a ``<base>``; nor is a ``<style>``,
    ``<title>`` or ``<script>`` raw text (:data:`.htmltokens.FOREIGN`): taken
    for one, it hid the ``<body>`` after it that readers read; and ``<![CDATA[`` opens
    text there, up to ``]]>``."""
    stack = _OpenElements()
    for name, found in _tags_read(html, stack):
        if stack.read(name, found):
            yield name, found


def readings(html: str) -> Iterator[tuple[int, int, Reading]]:
    """The stretches of ``html`` HTML's tokenizer reads alike (:class:`.htmltokens.Reading`),
    start and end, in order: one of HTML at once where no ``<svg`` or ``<math`` start tag
    can be; else as :func:`document_tags` finds them, a tag at a time. Each ends where a
    tag ends, so a stretch split on its own splits as the whole would (those of
    :func:`shown_readings` joined where only what readers show, or lay out as SVG or
    MathML, changes)."""
    start, reading = 0, HTML
    for at, _, wanted, *_ in shown_readings(html):
        if wanted is not reading:
            yield start, at, reading
            start, reading = at, wanted
    yield start, len(html), reading


def shown_readings(html: str) -> Iterator[tuple[int, int, Reading, bool, str, bool]]:
    """The stretches of :func:`readings`, split further where what readers show
    changes (:attr:`_OpenElements.shown`) or whether start tags open SVG or MathML
    elements (:attr:`_OpenElements.foreign_tag`), and at a tag breaking out of them
    (:attr:`_OpenElements.broke_out`: one in a stretch of its own), each with all
    three. A tag goes with the text after it: whether it shows what it opens (an
    image's alt text: ``<svg><img alt=x>`` breaks out, and shows it) and the lines a
    block breaks. An end tag the tree builder ignores though an element of its name
    is open (:attr:`_OpenElements.held`) is in none: ``<span hidden><svg><foreignObject></span>``
    leaves the span open in readers, what follows hidden.
    """
    if _FOREIGN_START.search(html) is None:
        yield 0, len(html), HTML, True, "", False
        return
    stack = _OpenElements()
    reading, shown, start = HTML, (True, "", False), 0
    for name, found in _tags_read(html, stack):
        stack.read(name, found)
        at = found.start()
        if stack.held:  # left out: a walk by names alone would close its element
            if start < at:
                yield start, at, reading, *shown
            start = at = found.end()
        if (showing := (stack.shown, stack.foreign_tag, stack.broke_out)) != shown:
            if start < at:
                yield start, at, reading, *shown
            start, shown = at, showing
        if (wanted := stack.reading()) is not reading:  # the text after the tag is read so
            if start < found.end():
                yield start, found.end(), reading, *shown
            reading, start = wanted, found.end()
    yield start, len(html), reading, *shown


def foreign_elements(html: str) -> Iterator[tuple[int, int]]:
    """Where each outermost ``<svg>`` or ``<math>`` element of ``html`` is as readers'
    tree builder reads it, start and end: from its start tag to its end tag, or up to
    the tag that closes it otherwise (an HTML tag breaking out, an HTML end tag
    reaching an element around it), or to the end."""
    if _FOREIGN_START.search(html) is None:
        return
    stack = _OpenElements()
    start, place, start_name = -1, 0, ""
    for name, found in _tags_read(html, stack):
        stack.read(name, found)
        if start < 0:
            if name in _OUTERMOST and stack.open[-1:] == [_OUTERMOST[name]]:
                start, place, start_name = found.start(), len(stack.open) - 1, name
        elif stack.open[place : place + 1] != [_OUTERMOST[start_name]]:  # closed
            yield start, found.end() if name in ("/svg", "/math") else found.start()
            start = -1
    if start >= 0:
        yield start, len(html)


def style_sheets(html: str) -> list[str]:
    """The sheets of the ``<style>`` elements of ``html`` as readers take them
    (:func:`_sheets_read`). One search finds whether there is a ``<style`` tag at all,
    and where the raw text after the last one ends: an HTML ``<style>`` element ends
    there at the latest, so where no ``<svg`` or ``<math`` start tag can be, the
    tokens are read only up to there. Taken wherever it was, a ``<style>`` in a
    comment, an attribute value, a ``<textarea>`` or ``<template>`` showed text a
    real sheet hides."""
    end = None
    for found in STYLE_SHEET.finditer(html):
        end = found.end()
    if end is None:
        return []
    return _sheets_read(html, len(html) if _FOREIGN_START.search(html) else end)


def _sheets_read(html: str, end: int) -> list[str]:
    """The sheets of the ``<style>`` elements of ``html`` (read up to ``end``) read a tag
    at a time, as :func:`document_tags` reads them, none in a ``<template>`` (its
    content is no part of the document): an HTML one's raw text; an SVG one's own text
    (browsers join its text children): references decoded, a CDATA section's
    text, no comment, no tag nor what an element in it holds, up to where the tree
    builder closes it (its end tag, an ``</svg>``, an HTML tag breaking out). Read as
    raw text, ``display:&#110;one`` or a CDATA section hid no text, and a comment or
    the HTML after a ``<b>`` was taken for rules. A MathML ``<style>`` is none: an element
    MathML does not know, no style element (taken for one, its rules hid text readers
    show)."""
    stack = _OpenElements()
    sheets: list[list[str]] = []
    # The SVG <style> elements open: their places in stack.open (plus one)
    # and their text so far.
    open_sheets: list[tuple[int, list[str]]] = []
    after = 0  # where the last token ended
    for found in _tokens_read(html, stack, end):
        if open_sheets and open_sheets[-1][0] == len(stack.open):  # the current element
            open_sheets[-1][1].extend((html_unescape(html[after : found.start()]),
                                       found.group("cdata") or ""))
        after = found.end()
        if (name := tag_name(found)) is None:
            continue
        stack.read(name, found)
        # An element closed takes those in it along; one opening in its place (a breakout
        # tag's) is shallower: an SVG <style> is never a child of HTML.
        while open_sheets and open_sheets[-1][0] > len(stack.open):
            open_sheets.pop()
        if name != "style" or stack.in_template:
            continue
        if found.group("raw") is not None:  # read as HTML: raw text
            sheets.append([found.group("content")])
        elif not _self_closing(found) and stack.open[-1][1] == "svg":  # now open
            text: list[str] = []
            sheets.append(text)
            open_sheets.append((len(stack.open), text))
    if open_sheets and open_sheets[-1][0] == len(stack.open):
        open_sheets[-1][1].append(html_unescape(html[after:end]))
    return ["".join(sheet) for sheet in sheets]


def _tags_read(html: str, stack: _OpenElements) -> Iterator[tuple[str, re.Match[str]]]:
    """The tags of ``html`` as :func:`_tokens_read` reads them (no comment)."""
    for found in _tokens_read(html, stack):
        if (name := tag_name(found)) is not None:
            yield name, found


def _tokens_read(html: str, stack: _OpenElements, end: int | None = None
                 ) -> Iterator[re.Match[str]]:
    """The tokens of ``html`` (comments, CDATA sections too) as HTML's tokenizer reads
    them, reading on after each as ``stack`` says once the caller has given it the tag
    (_OpenElements.read); up to ``end`` (as if the text ended there), or to its end."""
    reading, start, end = HTML, 0, len(html) if end is None else end
    while True:
        for found in reading.tokens.finditer(html, start, end):
            yield found
            if (wanted := stack.reading()) is not reading:
                reading, start = wanted, found.end()  # read on as the tree builder now is
                break
        else:
            return


# Start tags that end SVG or MathML content (html_cost.BREAKOUT): the tree builder closes
# what is open of it and reads the tag as HTML. SVG and MathML elements that hold HTML
# again (integration points; annotation-xml only of an HTML encoding, else only an <svg>
# start tag there is HTML), and those whose start tags but these two are HTML (MathML
# text integration points: html_cost.MATHML_TEXT).
_INTEGRATION = {"svg": SVG_POINTS, "math": frozenset({"annotation-xml"})}
_MATHML_GLYPHS = frozenset({"mglyph", "malignmark"})
_ENCODING = frozenset({"encoding"})
# A <foreignObject>'s width and height are 0 unless set: it shows nothing it holds
# (clipped, its overflow hidden; a size set too small: inlinestyle). A <textPath>
# draws along a path, its own or one it refers to: without, nothing.
_SIZE = frozenset({"width", "height"})
_PATH = frozenset({"path", "href", "xlink:href"})
# SVG elements readers never draw, nor anything they hold (HTML in a <desc> too): those
# that say what a drawing is, and those only drawn where another refers to them (a
# <text> in <defs> or a <clipPath> draws nothing there).
_UNDRAWN = frozenset(
    """desc metadata script style title clippath defs filter lineargradient marker mask
    pattern radialgradient symbol""".split())
# Those whose text SVG draws inside a <text>: any other there (a <g>, a <foreignObject>,
# one SVG does not know) is drawn by none, nor anything it holds.
_TEXT_CONTENT = frozenset({"tspan", "textpath", "a"})
# Elements readers draw only the first child element of, by namespace: MathML's
# (MathML Core's style sheet: "semantics > :not(:first-child) { display: none }",
# maction alike), and SVG's <switch>, the first whose conditions hold: one with a
# condition is taken to fail (it may, in some reader).
_FIRST_CHILD_ONLY = {"math": frozenset({"semantics", "maction"}), "svg": frozenset({"switch"})}
_CONDITIONS = frozenset({"systemlanguage", "requiredextensions"})
# The parts of an HTML table, each to those it goes in (else the table): where a table
# is open (past any template), their start tags close what is open in the table after
# the last of those, and their end tags (and the table's) the last of their name there
# (in table scope, which integration points do not bound): ``<td><svg><foreignObject>
# </td>x`` shows x, which in the foreignObject none did. Neither col nor colgroup holds
# anything (what is no col ends the colgroup).
TABLE_PARTS = {"td": ("tr",), "th": ("tr",), "tr": ("tbody", "thead", "tfoot"),
                "tbody": (), "thead": (), "tfoot": (), "caption": (), "colgroup": (),
                "col": ()}
_EMPTY_PARTS = frozenset({"col", "colgroup"})
# Those a part's start tag opens first where it is not in one: a cell a row, a row a
# section (</tr> closes the row a <td> implied).
IMPLIED_PARTS = {"td": "tr", "th": "tr", "tr": "tbody"}
# The HTML elements of button scope, where a </p> looks for its <p>, but <template>
# (_OpenElements.bounds) and <html> (never open): none past one (``<p><table><td></p>``)
# makes the </p> an empty <p> in it, as it does past an integration point.
_BUTTON_SCOPE = frozenset("applet button caption marquee object table td th".split())
# HTML start tags that open no element (void, <image> an <img>), or none where a body is
# already open.
_NOT_OPENED = VOID | frozenset("body frame frameset head html image".split())
# An open element: its name, its namespace ("html", "svg", "math") and its role: "point"
# (holds HTML), "text" (a MathML text integration point), "xml" (annotation-xml that
# holds other XML), "drawn" (an SVG <text>, and its _TEXT_CONTENT), "template" or "".
_Element = tuple[str, str, str]
# An <svg> or <math> element opened in HTML (foreign_elements).
_OUTERMOST: dict[str, _Element] = {"svg": ("svg", "svg", ""), "math": ("math", "math", "")}


class _OpenElements:
    """What HTML's tree builder has open that decides how a tag is read: every element,
    SVG, MathML or HTML (an end tag in SVG reaching an HTML element goes by HTML's rules:
    ``<div><svg></div>`` closes the svg and the div, and shows what follows). Simplified:
    HTML elements close only by their end tag (not ``<p>`` by the next ``<p>``) or a
    table part's start tag (:data:`TABLE_PARTS`), and none is reopened. Each tag costs
    constant time, but for the elements it closes."""

    def __init__(self) -> None:
        # Places in arrays, each element once, a list of places by name only linked
        # through them: a million <g> in an <svg> (3 MB) took 170 MB as lists of tuples
        # and ints, 10 MB so.
        self.open: list[_Element] = []
        self.elements: dict[_Element, _Element] = {}
        self.last: dict[str, int] = {}  # the last place of each _key open
        self.before = array("q")  # the place of the one open before it of its key, or -1
        self.html_at = array("q")  # places of HTML elements (templates too)
        self.bounds = array("q")  # places of integration points and templates
        self.scoped = array("q")  # and of the other elements of button scope (_BUTTON_SCOPE)
        self.undrawn = array("q")  # places of elements nothing in which is drawn
        self.chosen = array("q")  # places of open _FIRST_CHILD_ONLY elements with a child
        # The namespace ("svg", "math") of the SVG or MathML element the last start tag
        # opened (or one closed at once: "/>"), which breaks no line, closes no <p>,
        # shows no value as an HTML element named so does: readers lay it out as SVG or
        # MathML; "" for an HTML one (and after </br> or </p> breaking out).
        self.foreign_tag = ""
        # Whether the last end tag closed nothing though an element of its name is open
        # (below an element that holds HTML again, or SVG below HTML): ignored.
        self.held = False
        # Whether the last tag broke out of SVG or MathML content (an HTML start tag, or
        # </p> or </br>): it closed the SVG and MathML elements up to the last that is
        # HTML or holds it.
        self.broke_out = False

    @property
    def in_foreign(self) -> bool:
        """Whether a start tag here (but <svg>, <mglyph>, <malignmark>) is an SVG or
        MathML element."""
        return bool(self.open) and self.open[-1][1] != "html" and \
            self.open[-1][2] not in ("point", "text")

    @property
    def in_template(self) -> bool:
        """Whether an HTML ``<template>`` is open: what is in it is no part of the
        document."""
        return _key("template", html=True) in self.last

    @property
    def shown(self) -> bool:
        """Whether readers show text here: nothing an SVG ``<style>`` holds (its sheet, as
        nothing of an HTML one), ``<desc>``, ``<title>``, ``<metadata>`` or ``<script>``
        (HTML there too); in SVG only what a ``<text>`` holds itself or in its
        ``<tspan>``, ``<textPath>`` or ``<a>`` (not in a ``<g>`` or ``<foreignObject>``
        there, nor what those hold), or HTML again that a ``<foreignObject>`` outside
        a ``<text>`` holds: ``<svg>``, ``<g>``, ``<defs>`` draw no text of their own.
        MathML is shown as it is (a MathML ``<style>`` is an element MathML does not
        know: shown as any, no sheet), but what an ``<mphantom>`` holds (invisible,
        though it takes room) and a ``<semantics>`` or ``<maction>`` does but its first
        child (an annotation, an action's other states)."""
        if self.undrawn:
            return False
        if not self.open or self.open[-1][1] != "svg" or self.open[-1][2] == "point":
            return True
        return self.open[-1][2] == "drawn"

    def reading(self) -> Reading:
        """How HTML's tokenizer reads on: no raw text where a start tag is SVG or MathML,
        a CDATA section where an SVG or MathML element is the current one."""
        if not self.open or self.open[-1][1] == "html":
            return HTML
        return FOREIGN if self.in_foreign else INTEGRATION

    def read(self, name: str, tag: re.Match[str]) -> bool:
        """Take in the tag ``name`` (``tag``); whether it is the document's, an HTML
        element outside any template."""
        self.broke_out = False
        if name.startswith("/"):
            closed = self._end(name[1:], tag)
            # A </p> with no <p> in button scope to close is read as an empty <p>: never
            # ignored.
            self.held = not closed and name != "/p" and (
                _key(name[1:], html=True) in self.last or _key(name[1:], html=False) in self.last)
            return not self.in_foreign and not self.in_template
        self.held = False
        html = self._html_start(name)
        self.foreign_tag = "" if html or _breaks_out(name, tag) else self.open[-1][1]
        if self.foreign_tag:
            self._foreign_start(name, tag)
            return False
        if not html:
            self._break_out()
        return self._html_start_tag(name, tag)

    def _html_start(self, name: str) -> bool:
        """Whether the start tag ``name`` goes by HTML's rules (the tree builder's dispatch)."""
        if not self.open:
            return True
        role = self.open[-1][2]
        if role == "text":
            return name not in _MATHML_GLYPHS
        return not self.in_foreign or (role == "xml" and name == "svg")

    def _html_start_tag(self, name: str, tag: re.Match[str]) -> bool:
        if name == "template":
            self._push((name, "html", "template"))
            return False
        if name in ("svg", "math"):
            if not _self_closing(tag):
                self._push((name, name, ""))
            return False
        if name in TABLE_PARTS:
            self._table_part(name)
        elif name not in _NOT_OPENED:
            self._push((name, "html", ""))
        return not self.in_template

    def _table_part(self, name: str) -> None:
        """The start tag of a table part: ignored but where a table is open (past any
        template), it closes what is open in it after the last element it goes in."""
        if (table := self._table()) < 0:
            return
        outer = max([table, *(self.last.get(_key(part, html=True), -1)
                              for part in TABLE_PARTS[name])])
        if outer == table and name in IMPLIED_PARTS:
            self._table_part(IMPLIED_PARTS[name])
            outer = len(self.open) - 1
        self._close(outer + 1)
        if name not in _EMPTY_PARTS:
            self._push((name, "html", ""))

    def _table(self) -> int:
        """The place of the last HTML table open past any template; -1 for none."""
        table = self.last.get(_key("table", html=True), -1)
        return table if table > self.last.get(_key("template", html=True), -1) else -1

    def _foreign_start(self, name: str, tag: re.Match[str]) -> None:
        """A start tag read as SVG or MathML (of the namespace of the element it is in)."""
        later = self._later_child(tag)
        if _self_closing(tag):
            return
        namespace = self.open[-1][1]
        in_text = self.open[-1][2] == "drawn"
        role = ""
        if holds_html(name, namespace, tag.group("attributes")):
            role = "text" if namespace == "math" and name in MATHML_TEXT else "point"
        elif name in _INTEGRATION[namespace]:  # an annotation-xml of other XML
            role = "xml"
        elif namespace == "svg" and name in (_TEXT_CONTENT if in_text else ("text",)):
            role = "drawn"
        undrawn = later or _undrawn(name, namespace, in_text and role != "drawn") or (
            namespace == "svg" and _nowhere(name, tag))
        self._push((name, namespace, role), undrawn)

    def _later_child(self, tag: re.Match[str]) -> bool:
        """Whether the SVG or MathML element ``tag`` opens is a child of a
        :data:`_FIRST_CHILD_ONLY` element that readers do not draw: after the first."""
        parent = len(self.open) - 1
        name, namespace, _ = self.open[parent]
        if name not in _FIRST_CHILD_ONLY.get(namespace, ()):
            return False
        if _last(self.chosen) == parent or tag_attributes(tag, _CONDITIONS):
            return True
        self.chosen.append(parent)
        return False

    def _end(self, name: str, tag: re.Match[str]) -> bool:
        """An end tag; whether it closed an element so named. Where an SVG or MathML
        element is current, it closes the last one so named above the last HTML element
        (</p> and </br> close them all), or goes by HTML's rules; by these a template's
        closes the last template, a table's or a table part's the last so named in the
        last table (:data:`TABLE_PARTS`), another the last HTML element so named above
        the last integration point or template, a </p>'s above the last element of
        button scope."""
        if self.open and self.open[-1][1] != "html":
            if _breaks_out("/" + name, tag):
                self._break_out()
            elif (place := self.last.get(_key(name, html=False), -1)) > _last(self.html_at):
                self._close(place)
                return True
        place = self.last.get(_key(name, html=True), -1)
        if name == "table" or name in TABLE_PARTS:
            bound = table if (table := self._table()) >= 0 else len(self.open)  # none
        elif name == "p":
            bound = max(_last(self.bounds), _last(self.scoped)) + 1
        else:
            bound = 0 if name == "template" else _last(self.bounds) + 1
        if place >= bound:
            self._close(place)
            return True
        return False

    def _break_out(self) -> None:
        self._close(self._floor() + 1)
        self.broke_out, self.foreign_tag = True, ""  # </br> too is an HTML tag then

    def _floor(self) -> int:
        """The place of the last element that is HTML or holds it: a breakout start tag
        closes the SVG or MathML elements after it."""
        return max(_last(self.bounds), _last(self.html_at))

    def _push(self, element: _Element, undrawn: bool = False) -> None:
        name, namespace, role = element
        place = len(self.open)
        key = _key(name, html=namespace == "html")
        self.before.append(self.last.get(key, -1))
        self.last[key] = place
        if namespace == "html":
            self.html_at.append(place)
        if undrawn:
            self.undrawn.append(place)
        if role in ("point", "text", "template"):
            self.bounds.append(place)
        elif _bounds_p(name, namespace, role):
            self.scoped.append(place)
        self.open.append(self.elements.setdefault(element, element))

    def _close(self, place: int) -> None:
        """Close what is open from ``place`` on."""
        for name, namespace, role in reversed(self.open[place:]):
            if (before := self.before.pop()) < 0:
                del self.last[_key(name, html=namespace == "html")]
            else:
                self.last[_key(name, html=namespace == "html")] = before
            if namespace == "html":
                self.html_at.pop()
            if role in ("point", "text", "template"):
                self.bounds.pop()
            elif _bounds_p(name, namespace, role):
                self.scoped.pop()
        while self.undrawn and self.undrawn[-1] >= place:
            self.undrawn.pop()
        while self.chosen and self.chosen[-1] >= place:
            self.chosen.pop()
        del self.open[place:]


def holds_html(name: str, namespace: str, attributes: str) -> bool:
    """Whether the SVG or MathML (``namespace``) element ``name`` with these attributes
    (as written) holds HTML: start tags there (but a few) are HTML, none breaks out."""
    if namespace == "math" and name in MATHML_TEXT:
        return True
    return name in _INTEGRATION[namespace] and (name != "annotation-xml" or ascii_lower(
        _attribute_values(attributes, _ENCODING).get("encoding", "")) in HTML_ENCODINGS)


def _undrawn(name: str, namespace: str, out_of_text: bool) -> bool:
    """Whether readers draw nothing of the SVG or MathML element ``name`` nor of what it
    holds (``out_of_text``: in an SVG <text>, but none of its text content)."""
    if namespace == "svg":
        return name in _UNDRAWN or out_of_text
    return name == "mphantom"  # visibility: hidden


def _nowhere(name: str, tag: re.Match[str]) -> bool:
    """Whether the SVG element ``name`` (``tag``) has nowhere to draw what it holds: a
    <foreignObject> whose width or height is not set (as an attribute, or perhaps in
    its style), a <textPath> without a path."""
    if name == "foreignobject":
        size = tag_attributes(tag, _SIZE | {"style"})
        return not _SIZE <= size.keys() and "style" not in size
    return name == "textpath" and not tag_attributes(tag, _PATH)


def _bounds_p(name: str, namespace: str, role: str) -> bool:
    """Whether the element (not an integration point or template) bounds the search of
    a </p> for its <p> (HTML's button scope)."""
    return role == "xml" or (namespace == "html" and name in _BUTTON_SCOPE)


def _key(name: str, html: bool) -> str:
    """An element's key in _OpenElements.last: an end tag in SVG or MathML content
    looks for an SVG or MathML element so named, by HTML's rules for an HTML one."""
    return "/" + name if html else name


def _last(places: array[int]) -> int:
    """The last of ``places``; -1 for none."""
    return places[-1] if places else -1


def _breaks_out(name: str, tag: re.Match[str]) -> bool:
    """Whether the tag ends SVG or MathML content, read as HTML."""
    if name in ("/br", "/p"):
        return True
    return name in BREAKOUT and (name != "font" or bool(tag_attributes(tag, FONT_BREAKS)))


def _self_closing(tag: re.Match[str]) -> bool:
    """Whether a start tag ends in "/>" as HTML's tokenizer reads it: not a "/" that
    ends an unquoted value (``<svg a=b/>``), nor one before a space or the end."""
    attributes = tag.group("attributes")
    if not attributes.endswith("/") or not tag.string.startswith(">", tag.end("attributes")):
        return False
    found = ATTRIBUTE.findall(attributes)
    value = found[-1][1] if found else ""
    return not value.endswith("/") or value[:1] in ("'", '"')
