"""What nh3's HTML tree builder would spend on a part, estimated in one linear pass.

html5ever (nh3's parser) follows the HTML standard's tree construction, which is
quadratic on two shapes a sender can write in a few kilobytes: deep nesting
(tags look through the open elements for a scope), and formatting elements
left open under elements that close (each close and reopen creates them all
again: 20 KB of ``<div>``s and ``<b c=N>``s come out as 7 MB, in 0.6 s of CPU;
200 KB of nested ``<div>``s take 0.7 s, 500 KB 28 s). Its tokenizer is quadratic on a
third: a tag with many attributes (each looks through the distinct ones before it for
a duplicate: ``<p a0 a1 ...>`` takes 0.15 s at 200 KB, 10 s at 3 MB). Browsers pay the
same, but a mail filter must not: one message would hold a core.

:func:`too_costly` follows the tags as the tree builder would, roughly and in
constant time per tag: the open elements (with the closes a ``<p>``, ``<li>``,
``<td>``... imply, so sloppy but ordinary HTML stays shallow), the active
formatting elements (three alike at most, the standard's "Noah's Ark"
clause), and the reopening of those a close took away; in SVG and MathML, the
foreign elements an end tag looks through, and the HTML an integration point
(``<foreignObject>``, ``<mi>``) holds, as HTML. It adds up the open elements looked
through, the elements reopened and, for each tag, its attributes times the distinct
ones among them, weighted by what each costs nh3, and stops once the budget is spent.
Ordinary mail stays three orders of magnitude below it.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict

from .htmltokens import attribute_unescape

# A tag as the tokenizer starts it, what follows its name up to ">" its attributes; and
# the character after it unless another tag starts there: text, which reopens what a
# close took away.
_TAG = re.compile(r"<(/?)([a-z][^\t\n\f\r />]*)([^>]*)>?([^<]?)")
_WS = "\t\n\f\r "
# The tokenizer's attributes: a quoted value may hold ">", which then ends no tag.
_NAME = r"[^\t\n\f\r />][^\t\n\f\r />=]*"
_QUOTED = r"""(?P<quoted>"[^"]*"|'[^']*')"""
_VALUE = rf"""[\t\n\f\r ]*=[\t\n\f\r ]*(?:{_QUOTED}|[^\t\n\f\r >]*)"""
_ATTRIBUTE = re.compile(rf"[\t\n\f\r /]*(?P<name>{_NAME})(?:{_VALUE})?")
# Where the tokenizer starts a tag with attributes (unless in a comment, raw text or an
# attribute value), and the attributes that follow it, a thousand at a time: sre keeps
# a backtracking point for each repeat of a group, 600 MB for a tag of 4 MB.
_START = re.compile(r"</?[a-z][^\t\n\f\r />]*(?=[\t\n\f\r /])")
_ATTRIBUTES = re.compile(
    rf"(?:[\t\n\f\r /]*{_NAME}(?:{_VALUE.replace('?P<quoted>', '?:')})?){{0,1000}}")
# Attributes written shorter than this (128 at most) cost nh3 nothing to speak of.
_COUNTED_FROM = 256
# How many times over attributes may be read (see _attribute_cost); ordinary mail
# reads them once.
_RESCANS = 4
VOID = frozenset(
    """area base basefont bgsound br col embed frame hr img input keygen link meta param
    source track wbr""".split()
)
_FORMATTING = frozenset("a b big code em font i nobr s small strike strong tt u".split())
_REOPENED = "\0"  # a formatting element opened again: closed by no end tag we follow
# A scope ends a search for an element to close.
_SCOPE = frozenset("applet caption html table td th marquee object template button".split())
# Start tags that close an open p (the standard's list, less those a table holds).
_CLOSE_P = frozenset(
    """address article aside blockquote center details dialog dir div dl fieldset
    figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr li listing main menu
    nav ol p pre section summary table ul dd dt""".split()
)
# Elements that put a marker in the active formatting list (the standard's list).
_MARKERS = frozenset("applet caption marquee object td th template".split())
# A start tag that closes an open cell or row of its table (within its scope).
_SIBLINGS = {"td": ("td", "th"), "th": ("td", "th"), "tr": ("tr",)}
# A list item closes an open one of its kind only if that is the innermost of the
# standard's special elements (all below but address, div and p, which the search looks
# past): <li><ul><x><li> nests, as the tree builder builds it.
_LIST_ITEMS = {"li": ("li",), "dd": ("dd", "dt"), "dt": ("dd", "dt")}
SPECIAL = frozenset(
    """applet area article aside base basefont bgsound blockquote body br button caption
    center col colgroup dd details dir dl dt embed fieldset figcaption figure footer form
    frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html iframe img input keygen li
    link listing main marquee menu meta nav noembed noframes noscript object ol param
    plaintext pre script search section select source style summary table tbody td
    template textarea tfoot th thead title tr track ul wbr xmp""".split()
)
# Start tags before which the standard does not reopen active formatting elements
# (besides _CLOSE_P): reopened there, sloppy <p><font>text mail nested without end.
_NO_REOPENING = frozenset("form plaintext table xmp".split())
# Inside SVG or MathML every start tag but these is another foreign element; these
# close all the foreign ones first (the standard's breakout list; "font" only with one
# of FONT_BREAKS).
BREAKOUT = frozenset(
    """b big blockquote body br center code dd div dl dt em embed font h1 h2 h3 h4 h5 h6 head
    hr i img li listing menu meta nobr ol p pre ruby s small span strike strong sub sup table
    tt u ul var""".split()
)
FONT_BREAKS = frozenset({"color", "face", "size"})
_FOREIGN = "\1"  # prefixed to a foreign element's name: none of the HTML rules apply to it
# SVG and MathML elements whose start tags (but a few) are HTML: integration points,
# and MathML's text integration points; annotation-xml too, of an HTML encoding. In
# HTML each bounds a scope (annotation-xml always).
SVG_POINTS = frozenset({"foreignobject", "desc", "title"})
MATHML_TEXT = frozenset({"mi", "mo", "mn", "ms", "mtext"})
_POINTS = {"svg": SVG_POINTS, "math": MATHML_TEXT}
HTML_ENCODINGS = frozenset({"text/html", "application/xhtml+xml"})
_ADOPTED = "\2"  # the slot of a formatting element the adoption agency took off the stack
# Closed by a ruby annotation's start tag while a ruby is in scope (the standard's
# "generate implied end tags"; rtc stays for rt and rp).
_IMPLIED_END = frozenset("dd dt li optgroup option p rb rp rt rtc".split())
# Outside a table the tree builder ignores these start tags.
_TABLE_ONLY = frozenset("caption col colgroup tbody td tfoot th thead tr".split())
NOAHS_ARK = 3
# Measured with nh3 0.2 on this project's 2-core machine: about 1.7 ns per open
# element looked through, 600 ns per formatting element reopened (created, then
# written out).
_REOPEN_WEIGHT = 350
# And 0.15 to 0.3 ns per attribute of a tag looked through by another (a duplicate of
# the last distinct one looks through all): counted at 2 to 4 times that.
_ATTRIBUTE_LOOKS_PER_UNIT = 3
BUDGET = 60_000_000  # about 100 ms of nh3


class _Builder:
    """Open elements and active formatting elements, and the cost they add up to."""

    def __init__(self) -> None:
        self.open: list[str] = []
        self.at: defaultdict[str, list[int]] = defaultdict(list)  # name -> its indexes in open
        self.scopes: list[int] = []  # indexes in open of scope elements
        self.special: list[int] = []  # indexes in open of SPECIAL elements
        self.floor = 0  # where a search for a scope stops: the innermost scope element
        # Active formatting entries, None once closed; a cell or caption sets a marker:
        # closing it clears the entries after it, which are never reopened past it.
        self.active: list[tuple[str, str] | None] = []
        self.active_at: defaultdict[str, list[int]] = defaultdict(list)  # name -> indexes
        self.ark: Counter[tuple[str, str]] = Counter()  # entries alike
        self.markers: list[int] = []  # len(active) at each marker
        self.live = 0  # entries not None since the last marker
        self.live_before: list[int] = []  # live at each marker
        self.displaced_before: list[int] = []  # displaced at each marker
        self.displaced = 0  # active formatting elements a close took off the stack
        self.roots: list[int] = []  # indexes in open of svg and math elements
        self.points: list[int] = []  # of SVG and MathML elements that hold HTML
        self.html_at: list[int] = []  # of HTML elements inside SVG or MathML
        self.cost = 0

    def text(self) -> None:
        # The standard's "reconstruct the active formatting elements" (not in SVG, MathML).
        if self.displaced and not self._in_foreign():
            self.cost += self.displaced * _REOPEN_WEIGHT
            for _ in range(self.displaced):
                self._push(_REOPENED)
            self.displaced = 0

    def start(self, name: str, attributes: str) -> None:
        if self._in_foreign():
            if not _breaks_out(name, attributes):
                self.cost += 1
                if not attributes.rstrip().endswith("/"):  # a self-closing one is popped at once
                    self._push_foreign(name, attributes)
                return
            while self._in_foreign():  # out of SVG or MathML, then as HTML
                self._pop()
                self.cost += 1
        if name in ("svg", "math"):
            self.cost += len(self.open) - self.floor  # as any start tag (below)
            self._push_foreign(name, attributes)
            return
        at = self.at
        if name in _TABLE_ONLY and not at.get("table"):
            return
        if name in _LIST_ITEMS:
            self._close_list_item(name)
        elif name in _SIBLINGS:
            for sibling in _SIBLINGS[name]:
                self._html_end(sibling)
        elif name in ("option", "optgroup"):
            self._close_current_option(name)
        elif name == "form" and at.get("form"):
            return  # the tree builder ignores a form inside a form
        elif name in ("rb", "rp", "rt", "rtc") and at.get("ruby") and at["ruby"][-1] >= self.floor:
            keep = "rtc" if name in ("rp", "rt") else ""
            while self.open and self.open[-1] in _IMPLIED_END and self.open[-1] != keep:
                self._html_end(self.open[-1])
        if name in _CLOSE_P:  # looks for an open p: through the scope, or to close it
            if at.get("p"):
                self._html_end("p")
            else:
                self.cost += len(self.open) - self.floor
        if self.displaced and name not in _CLOSE_P and name not in _NO_REOPENING:
            self.text()  # the standard reopens before inline content, not a block
        self.cost += len(self.open) - self.floor
        if name in VOID:
            return
        self._push(name)
        if name in _MARKERS:
            self.markers.append(len(self.active))
            self.live_before.append(self.live)
            self.live = 0
            # Nothing outside a cell or caption is reopened inside it.
            self.displaced_before.append(self.displaced)
            self.displaced = 0
        entry = (name, attributes.strip())
        if name in _FORMATTING and self.ark[entry] < NOAHS_ARK:
            self.ark[entry] += 1
            self.active_at[name].append(len(self.active))
            self.active.append(entry)
            self.live += 1

    def end(self, name: str) -> None:
        """An end tag: where an SVG or MathML element is the current one, the tree
        builder looks down through the foreign elements for one so named, then, reaching
        an HTML one, reads it as HTML."""
        if self.roots and self.open[-1].startswith(_FOREIGN):
            below = max(self.roots[0], self.html_at[-1] if self.html_at else 0)
            # Measured: twice what a scope search costs an element (with the HTML end
            # tag's search after it, as counted below, about what nh3 spends).
            self.cost += 2 * (len(self.open) - below)
            where = self.at.get(_FOREIGN + name)
            if where and where[-1] >= below:
                found = where[-1]
                while len(self.open) > found:
                    self._pop()
                return
        self._html_end(name)

    def _html_end(self, name: str) -> None:
        """Close the nearest open ``name`` within the scope, if there is one."""
        self.cost += len(self.open) - self.floor
        if name in _FORMATTING and self.active_at[name]:
            at = self.active_at[name][-1]
            if not self.markers or at >= self.markers[-1]:
                self._forget(at)
        where = self.at.get(name)
        if not where:  # the common case: a p implied closed that was not open
            return
        if where[-1] < self.floor and name not in _SCOPE:
            return
        if name in _FORMATTING and self.special and self.special[-1] > where[-1]:
            # The adoption agency: the special elements above it stay open (it moves
            # them, and what they hold, under a copy of it), and it leaves the stack;
            # its slot stays until all above it close.
            self.cost += len(self.open) - where[-1]
            self.open[self.at[name].pop()] = _ADOPTED
            return
        if where[-1] < self._end_tag_stop(name):
            return  # the tree builder ignores it: the element stays open
        while len(self.open) > where[-1]:
            closed = self._pop()
            if closed == name:
                break
            if closed in _FORMATTING or closed == _REOPENED:
                self.displaced += 1
        self.displaced = min(self.displaced, self.live)

    def _end_tag_stop(self, name: str) -> int:
        """Below which an open ``name`` is out of reach of its end tag: a list item's
        behind a list (the standard's list item scope), any other element's that is
        not special, nor formatting, behind a special element (its "any other end tag")."""
        if name == "li":
            return max(self.at["ul"][-1] if self.at.get("ul") else -1,
                       self.at["ol"][-1] if self.at.get("ol") else -1)
        if name in SPECIAL or name in _FORMATTING or name == _REOPENED:
            return -1
        return self.special[-1] if self.special else -1

    def _close_current_option(self, name: str) -> None:
        """An option or optgroup closes the current option only (one further down stays
        open); in a select, an optgroup the current optgroup too."""
        if self.open and self.open[-1] == "option":
            self._html_end("option")
        if name == "optgroup" and self.at.get("select") and self.open and \
                self.open[-1] == "optgroup":
            self._html_end("optgroup")

    def _close_list_item(self, name: str) -> None:
        """The standard's search for an open list item to close: down to the innermost
        special element, which is closed if it is one of ``name``'s kind."""
        innermost = self.special[-1] if self.special else 0
        self.cost += len(self.open) - innermost
        if self.special and self.open[innermost] in _LIST_ITEMS[name]:
            self._html_end(self.open[innermost])

    def _forget(self, at: int) -> None:
        entry = self.active[at]
        assert entry is not None  # noqa: S101 - active_at holds live entries only
        self.active[at] = None
        self.active_at[entry[0]].remove(at)  # the last or next to it: short
        self.ark[entry] -= 1
        self.live -= 1

    def _clear_to_marker(self) -> None:
        mark = self.markers.pop()
        while len(self.active) > mark:
            entry = self.active.pop()
            if entry is not None:
                self.active_at[entry[0]].pop()
                self.ark[entry] -= 1
        self.live = self.live_before.pop()
        self.displaced = self.displaced_before.pop()  # those displaced inside go with it

    def _in_foreign(self) -> bool:
        """Whether the current element is an SVG or MathML one that holds no HTML: a start
        tag there (but a breakout's) is another, and text reopens nothing."""
        return bool(self.roots) and self.open[-1].startswith(_FOREIGN) and \
            not (self.points and self.points[-1] == len(self.open) - 1)

    def _push_foreign(self, name: str, attributes: str) -> None:
        """Open an SVG or MathML element: ``<svg>``, ``<math>`` or one inside them."""
        at = len(self.open)
        namespace = name if name in ("svg", "math") else self.open[self.roots[-1]][1:]
        point = name in _POINTS[namespace] or (
            namespace == "math" and name == "annotation-xml" and _html_encoded(attributes))
        if name in ("svg", "math"):
            self.roots.append(at)
        if point:
            self.points.append(at)
        self._push(_FOREIGN + name, scope=point or name == "annotation-xml")

    def _push(self, name: str, scope: bool = False) -> None:
        if scope or name in _SCOPE:
            self.floor = len(self.open)
            self.scopes.append(self.floor)
        if name in SPECIAL:
            self.special.append(len(self.open))
        if self.roots and not name.startswith(_FOREIGN):
            self.html_at.append(len(self.open))
        self.at[name].append(len(self.open))
        self.open.append(name)

    def _pop(self) -> str:
        name = self.open.pop()
        self.at[name].pop()
        self._left(len(self.open))
        if name in SPECIAL:
            self.special.pop()
        if name in _MARKERS:
            self._clear_to_marker()
        while self.open and self.open[-1] == _ADOPTED:  # slots with nothing above
            self.open.pop()
            self._left(len(self.open))
        return name

    def _left(self, at: int) -> None:
        """Forget the place ``at`` in open, which an element (or a slot) has left."""
        for places in (self.roots, self.points, self.html_at):
            if places and places[-1] == at:
                places.pop()
        if self.scopes and self.scopes[-1] == at:
            self.scopes.pop()
            self.floor = self.scopes[-1] if self.scopes else 0


def too_costly(folded: str, budget: int = BUDGET) -> bool:
    """Whether nh3 would spend more than ``budget`` (about 100 ms) on the HTML
    ``folded`` (lower-cased: tag names are matched as they are)."""
    return estimated_cost(folded, budget) > budget


def estimated_cost(folded: str, stop: int) -> int:
    """What nh3 would spend on the lower-cased HTML ``folded``, in units of about
    1.7 ns; counted up to past ``stop``."""
    builder = _Builder()
    builder.cost = _attribute_cost(folded, stop)
    start, end = builder.start, builder.end
    for tag in _TAG.finditer(folded):  # not findall: a tuple for every tag at once
        if builder.cost > stop:
            break
        closing, name, attributes, text_after = tag.groups()
        if closing:
            end(name)
        else:
            start(name, attributes)
        if text_after and builder.displaced:
            builder.text()
    return builder.cost


def _breaks_out(name: str, attributes: str) -> bool:
    """Whether a start tag in SVG or MathML content ends it, read as HTML."""
    return name in BREAKOUT and (name != "font" or any(
        found["name"] in FONT_BREAKS for found in _ATTRIBUTE.finditer(attributes)))


def _html_encoded(attributes: str) -> bool:
    """Whether an ``<annotation-xml>``'s first ``encoding`` attribute names HTML, as the
    tokenizer reads its value (either way taken wrongly, a tag after it was read at
    far less than it costs)."""
    for found in _ATTRIBUTE.finditer(attributes):
        if found["name"] == "encoding":
            quoted = found["quoted"]
            value = quoted[1:-1] if quoted else found.group().partition("=")[2].strip(_WS)
            return attribute_unescape(value) in HTML_ENCODINGS
    return False


def _attribute_cost(folded: str, stop: int) -> int:
    """What the tokenizer's search for duplicate attributes costs: each attribute of a
    tag looks through the distinct ones kept before it, up to all of them.

    Read from wherever a tag could start, in a comment or a quoted value too: which of
    them the tokenizer reads as tags depends on states _TAG does not follow, and a tag
    it missed could hide a tag's attributes in a quoted value of its own. Attributes
    read that way more than _RESCANS times over, as quoted values that nest, tell
    nothing in linear time: counted as past ``stop``.
    """
    cost = scanned = frontier = 0
    quoted: list[tuple[int, int]] = []  # a heap of the quoted values read: (start, end)
    for tag in _START.finditer(folded):
        # A start within attributes read already, outside their quoted values, reads as
        # the rest of them (text with "<" and no ">": each byte once, not once a "<").
        if tag.start() < frontier and not _within(quoted, tag.start()):
            continue
        start, end = tag.end(), _attributes_end(folded, tag.end() + 1)  # after a separator
        scanned += end - start
        if scanned > _RESCANS * len(folded):
            return stop + 1
        frontier = max(frontier, end)
        long = end - start >= _COUNTED_FROM
        if not long and folded.find("<", start, end) < 0:
            continue  # few attributes, and no tag to start in their values
        names = []
        for attribute in _ATTRIBUTE.finditer(folded, start, end):
            names.append(attribute["name"])
            if attribute["quoted"] is not None and "<" in attribute["quoted"]:
                heapq.heappush(quoted, attribute.span("quoted"))
        if long:
            cost += len(names) * len(set(names)) // _ATTRIBUTE_LOOKS_PER_UNIT
            if cost > stop:
                break
    return cost


def _attributes_end(folded: str, at: int) -> int:
    """Where the attributes from ``at`` end (each is matched as the one before it left
    off: a thousand at a time read as all at once)."""
    while (end := _ATTRIBUTES.match(folded, at).end()) > at:  # type: ignore[union-attr]
        at = end
    return at


def _within(quoted: list[tuple[int, int]], at: int) -> bool:
    """Whether ``at`` lies in one of the ``quoted`` values (a heap by start), those ended
    before it dropped: the positions asked about only grow."""
    while quoted and quoted[0][0] <= at and quoted[0][1] <= at:
        heapq.heappop(quoted)
    return bool(quoted) and quoted[0][0] <= at
