"""The text of HTML as a reader shows it, leaving out what inline CSS hides: a
linear walk over the tokens of :data:`~postwarden_policies.htmltokens.TOKENS`
(read as HTML's tokenizer reads SVG and MathML content where there is some:
:func:`~postwarden_policies.foreigncontent.readings`) that keeps the open elements
as HTML's tree builder does (see :class:`_Walk`), each with the look
:func:`~postwarden_policies.inlinestyle.look_of` reads from its attributes and the
document's ``<style>`` sheets.
"""

from __future__ import annotations

import copy
import html
from bisect import bisect_right
from typing import TypeAlias

from .colours import Colour, near
from .foreigncontent import IMPLIED_PARTS, TABLE_PARTS, holds_html, shown_readings
from .html_cost import SPECIAL
from .htmltokens import BLOCK, WS, Reading, ascii_lower
from .inlinestyle import PLAIN, PROPERTIES, UNREADABLE_PX, Look, font_px, look_of
from .stylesheets import StyleSheet, read_style_sheets

# A right-to-left override and the pop that ends it: a reversing element's text
# goes between them, which bodytext.visible_characters then draws reversed.
OVERRIDE, POP = "\u202e", "\u202c"

_VOID = frozenset(
    "area base br col embed hr img input keygen link meta param source track wbr".split()
)
# Formatting elements: closed by an end tag of an element around them, they are
# opened again (same attributes) before the next text (HTML's "reconstruct the
# active formatting elements"), so a hidden <b> hides on past a </div>.
_FORMATTING = frozenset("a b big code em font i nobr s small strike strong tt u".split())
# Elements that put a marker in HTML's list of those (_Element.marker): none closed before
# one opens again in it, nor one closed in it after it ends (a hidden <b> closed before a
# <table> hid its cells' text, and one a <template> held the text after it).
_MARKERS = frozenset("applet caption marquee object td template th".split())
_TABLE_CONTEXT = frozenset({"table", "tbody", "thead", "tfoot", "tr"})
# What a start tag there keeps in the table; anything else goes before it.
_TABLE_PARTS = frozenset(
    "caption col colgroup form script style table tbody td template tfoot th thead tr".split()
)
# What the walk writes to: text, and the lists of a table and of what goes before it.
_Segment: TypeAlias = "list[str | _Segment]"
# Start tags that close an open <p> near the top of the stack (not <table> in quirks
# mode, which most mail renders in: it has no doctype), and the elements a start tag
# closes when one is the current element.
_BLOCKS = frozenset(BLOCK)
_CLOSES_P = _BLOCKS - {"br", "caption", "table", "tbody", "td", "tfoot", "th", "thead", "tr"}
# Where HTML's tree builder looks for that <p>, and for the one a </p> closes (button
# scope): above these HTML elements, and the SVG and MathML ones a list item's search
# stops at, which hold HTML (_Element.special: a <div> in a <desc>, which shows nothing,
# closed the <p> around the <svg>, a line break; one in an <mtext> split the word the <p>
# held, and one in a <template> showed its inert content). By namespace: an HTML <desc>
# bounds nothing. A </p> with no <p> there is an empty <p>: a line break.
_P_SCOPE = frozenset({"applet", "button", "caption", "html", "marquee", "object", "table",
                      "td", "template", "th"})
# A list item's start tag closes an open one of its kind if that is the last open of
# HTML's special elements (but address, div and p, which its search passes): not only
# the current element (<li><span hidden>a<li>b shows b, outside the span).
_LIST_ITEMS = {"li": ("li",), "dd": ("dd", "dt"), "dt": ("dd", "dt")}
# The elements that tell where in a table a start tag is (HTML's insertion modes): a
# <table> in one not a cell ends the table open (past any element fostered out of it).
_CONTEXTS = frozenset("caption table tbody td template tfoot th thead tr".split())
_SIBLINGS = {**_LIST_ITEMS, "td": ("td", "th"),
             "th": ("td", "th"), "tr": ("tr", "td", "th"), "option": ("option",)}
# Start tags that close an open element of their name first as its end tag would, where
# that is in scope: HTML's tree builder nests no <button> in another, and runs the
# adoption agency for an <a> on the last <a> in its list of formatting elements after
# the last marker (one waiting to open again is forgotten, _Walk.end), for a <nobr> on
# one open in scope.
_ENDS_OWN = frozenset({"a", "button", "nobr"})
# Start tags that may close open elements.
_IMPLIES = _CLOSES_P | _SIBLINGS.keys() | TABLE_PARTS.keys() | _ENDS_OWN | {"table"}
# Start tags before which HTML's tree builder opens no formatting element again: those of
# blocks, of a table's parts, of what goes in the head (the walk opens them before any
# other HTML one; none before an SVG or MathML element, nor its text but where it holds
# HTML: <svg><text>xyz after a hidden <b> closed showed no xyz, which readers show). Opened
# in a hidden <b> closed before, a <div> hid the lines it breaks, and a cell in it its
# text, which readers show (the cell marks their list).
_OPENS_AS_IS = _TABLE_PARTS | frozenset("""address article aside base basefont bgsound blockquote
    body center dd details dialog dir div dl dt fieldset figcaption figure footer form frameset
    h1 h2 h3 h4 h5 h6 header hgroup hr html iframe li link listing main menu meta nav noembed
    noframes ol p plaintext pre rb rp rt rtc search section summary textarea title ul""".split())
# End tags by HTML's rules in body: these close the last element of their name only
# where no element of default scope (_SCOPE_BOUNDS, and the SVG and MathML ones that
# hold HTML) is open after it, else are ignored (``<table><div hidden><td></div>x``
# keeps x in the hidden div); a heading's closes the last heading (</h2> an <h1>), a
# </li> the last <li> after the last list too; </body> and </html> close nothing (the
# text after them goes where it went before). Any other closes the last of its name
# only where none of HTML's special elements (_Element.wall) is open after it
# (``<span hidden><div>a</span>b`` hides b): the tree builder looks for it from the
# current element and stops at one.
_SCOPE_BOUNDS = frozenset("applet caption marquee object table td template th".split())
_SCOPED_ENDS = frozenset("""address applet article aside blockquote button center dd details
    dialog dir div dl dt fieldset figcaption figure footer header hgroup listing main marquee
    menu nav object ol pre search section summary ul""".split()) | _FORMATTING
_WALLS = SPECIAL | {"address", "div", "p"}  # HTML's special elements
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_LISTS = ("ol", "ul")
_KEPT_OPEN = frozenset({"body", "html"})
# The adoption agency's loops: the special elements a formatting element's end tag moves
# it past, and the formatting elements before each that it opens again in the new place.
_ADOPTIONS, _ADOPTED_NEAR = 8, 3
_SPLIT_BATCH = 4096  # tags split at a time (render_visible)
_SHOWN_RAW = frozenset({"textarea", "plaintext"})  # raw text readers show
_MADE_MOST = 4096  # elements kept for reuse (_Walk.made): past that, it starts afresh


class _Style:
    """How text in an element shows: what it inherits, and a child may undo. Shared by
    the elements that change none of it (most of them: a tag whose look is PLAIN)."""

    __slots__ = ("backdrop", "colour", "font_px", "gone", "painted", "readable", "visible")
    gone: bool  # for all inside too
    visible: bool
    painted: bool  # in a colour
    font_px: float
    colour: Colour | None  # the text's, where known
    backdrop: Colour | None  # the background's behind it, where one is set
    readable: bool  # what all that leaves

    def __init__(self, parent: _Style | None = None, look: Look = PLAIN) -> None:
        if parent is None:
            self.gone, self.visible, self.painted, self.font_px = False, True, True, 16.0
            self.colour = self.backdrop = None
            self.readable = True
            return
        self.gone = parent.gone or look.gone
        self.visible = parent.visible if look.visible is None else look.visible
        self.painted = parent.painted if look.painted is None else look.painted
        self.font_px = (parent.font_px if look.font_size is None
                        else font_px(look.font_size, parent.font_px))
        self.colour = parent.colour if look.colour is None else look.colour
        self.backdrop = parent.backdrop if look.backdrop is None else look.backdrop
        self.readable = (not self.gone and self.visible and self.painted
                         and self.font_px >= UNREADABLE_PX
                         and not near(self.colour, self.backdrop))


class _Element:
    """An open element as the walk keeps it: how text in it shows, and where it goes."""

    __slots__ = ("bound", "breaks", "container", "context", "foreign", "fostered", "host",
                 "look", "marker", "name", "point", "scope", "segment", "special", "style",
                 "tracked", "wall")

    def __init__(  # noqa: PLR0917 - one per slot, by position: the walk's hot path
        self, name: str, look: Look, style: _Style, breaks: bool, container: _Segment,
        segment: _Segment, host: _Style, fostered: _Segment,
    ) -> None:
        self.name = name
        self.look = look  # kept to open it again (see _FORMATTING)
        self.style = style
        self.breaks = breaks  # a line break before and after (a block, not gone)
        self.container = container  # where its line breaks go
        self.segment = segment  # where what it holds goes
        self.host = host  # in a table: the style of the table's parent, for what is fostered
        self.fostered = fostered  # in a table: where text and tags out of place go, before it
        self.foreign = False  # an SVG or MathML element
        self.point = False  # one that holds HTML (foreigncontent.holds_html)
        self.special = name in SPECIAL  # one a list item's search stops at
        self.context = name in _CONTEXTS
        self.scope = name == "p" or name in _P_SCOPE  # a <p>, or bounds the search for one
        self.marker = name in _MARKERS
        self.wall = name in _WALLS  # one an end tag's search stops at (_SCOPED_ENDS)
        self.bound = name in _SCOPE_BOUNDS  # and one a scoped end tag's search stops at
        # Any of them: the walk notes its place (most elements are none of them,
        # and skip that: the walk's hot path).
        self.tracked = (self.special or self.context or self.scope or self.marker
                        or self.wall)

    def adopted(self, parent: _Element) -> _Element:
        """This element, moved into ``parent`` (HTML's adoption agency): its look over
        the style of what it is in now."""
        moved = copy.copy(self)
        fostered = parent.name in _TABLE_CONTEXT and self.name not in _TABLE_PARTS
        base = parent.host if fostered else parent.style
        moved.style = base if self.look is PLAIN else _Style(base, self.look)
        moved.host = parent.host
        return moved

    def child(self, name: str, look: Look, quiet: bool = False) -> _Element:
        """The element a start tag of this look opens in this one (nothing of it shown
        yet: see _Walk._open); a quiet one breaks no line."""
        if self.name in _TABLE_CONTEXT and name not in _TABLE_PARTS:  # fostered
            parent, container = self.host, self.fostered
        else:
            parent, container = self.style, self.segment
        style = parent if look is PLAIN else _Style(parent, look)
        # Opened again, a block (by CSS) breaks no line: the rendering stays shorter
        # than the text, however often an element is opened again. Nor one opened
        # where nothing shows (in an SVG <desc>).
        breaks = (name in _BLOCKS if look.breaks is None else look.breaks) and not (
            quiet or style.gone)
        if name == "table":  # what is fostered goes before it, what it holds in it
            return _Element(name, look, style, breaks, container, [], parent, [])
        return _Element(name, look, style, breaks, container, container, self.host,
                        self.fostered)


class _Walk:
    """The text of HTML as its tags come, leaving out what no reader sees.

    Elements are tracked on a stack as HTML's tree builder keeps them, in the
    parts that decide what an element holds and where it shows: void elements
    hold nothing; an end tag closes up to the open element of its name where HTML's
    scopes let it (_SCOPED_ENDS), a formatting element's moving what it holds as HTML's
    adoption agency does (_Walk._adopt), and is ignored else; block starts close a
    nearby <p>, and <li>, <dd>... close their own kind, and a table part what its
    table holds after the part it goes in (a <td> all after the row); formatting
    elements an end tag closed around them open again before the next text; text and
    tags out of place in a table show before it ("foster parenting":
    ``vi<table>agra<tr>`` reads ``viagra``).
    What shows goes into nested lists (a table's and what goes before it), joined
    once at the end. Each step is constant work but closing, paid for by the tags that
    opened what it closes, and the reopening and an adoption past eight special elements,
    which a ladder of nested tags could make quadratic: they are bounded by the text's
    length, past which nothing is reopened nor adopted.
    """

    def __init__(self, budget: int, sheet: StyleSheet) -> None:
        style = _Style()
        self.root: _Segment = []
        self.stack = [_Element("", PLAIN, style, False, self.root, self.root, style, self.root)]
        self.open: dict[str, list[int]] = {}  # the places in stack of each name open
        # The places of open elements outside each open HTML <template>: an end tag in
        # one closes nothing outside it (but its own), nor does a start tag.
        self.outside: list[dict[str, list[int]]] = []
        self.specials: list[int] = []  # places in stack of the open _Element.special ones
        self.contexts: list[int] = []  # and of the _Element.context ones
        self.scopes: list[int] = []  # and of the _Element.scope ones
        self.walls: list[int] = []  # and of the _Element.wall ones
        self.bounds: list[int] = []  # and of the _Element.bound ones
        self.closed: list[_Element | None] = []  # to open again (None: ended since)
        # Where each name is in closed, last last: an end tag finds its element there
        # at once (a scan of closed per end tag made </i> after many <b> quadratic).
        self.closed_at: dict[str, list[int]] = {}
        # Both, as they were where each open _Element.marker opened (None: empty).
        self.markers: list[tuple[list[_Element | None], dict[str, list[int]]] | None] = []
        self.budget = budget
        self.looks: dict[tuple[str, str, str], Look] = {}  # mail repeats its styles
        # And its tags, in the same places: an element is made once for a tag in the
        # element it opens in (but a table, whose lists are its own).
        self.made: dict[tuple[_Element, str, str, bool, str], _Element] = {}
        self.sheet = sheet
        # Whether readers show what comes here (foreigncontent.shown_readings): text,
        # alt text, the lines a block breaks; and the namespace of the SVG or MathML
        # elements start tags here open ("svg", "math"), which none of HTML's block
        # rules reach, "" for HTML.
        self.showing = True
        self.foreign = ""
        # Whether the tag here breaks out of SVG or MathML content: it closes their
        # elements up to the last that is HTML or holds it (display:none on an <svg>
        # hid the <p> breaking out of it, which readers show).
        self.breaking = False

    def text(self, text: str, literal: bool = False) -> None:
        """Show ``text``: references decoded, but in ``literal`` text (a CDATA section's)."""
        if self.breaking:  # after an end tag breaking out that the walk is not given
            self._break_out()
        if not self.showing:
            return
        if self.closed and (self.stack[-1].point or not self.stack[-1].foreign):
            self._reopen()
        top = self.stack[-1]
        if top.name in _TABLE_CONTEXT and text.strip(WS):
            style, segment = top.host, top.fostered
        else:
            style, segment = top.style, top.segment
        if style.readable:
            segment.append(html.unescape(text) if "&" in text and not literal else text)

    def start(self, name: str, attributes: str) -> None:
        if self.breaking:
            self._break_out()
        if name == "image" and not self.foreign:
            name = "img"  # HTML's tree builder renames it: its alt text shows
        if name in TABLE_PARTS and not self.foreign and not (
                self.open.get("table") or self.open.get("template")):
            return  # ignored outside a table: a <caption> there bounded no <p> search
        if self.closed and not self.foreign and name not in _OPENS_AS_IS:
            self._reopen()
        if name in _IMPLIES and not self.foreign:
            self._close_implied(name)
        self._open(self._element(name, attributes))

    def _element(self, name: str, attributes: str) -> _Element:
        """The element the start tag ``name`` opens in the current one."""
        top = self.stack[-1]
        quiet = bool(self.foreign) or not self.showing
        # An <svg> or <math> tag in HTML opens one.
        namespace = self.foreign or (name if name in ("svg", "math") else "")
        key = (top, name, attributes, quiet, namespace)
        element = self.made.get(key)
        if element is None:
            look = self.looks.get((name, attributes, namespace))
            if look is None:
                look = self.looks[name, attributes, namespace] = look_of(
                    name, attributes, self.sheet, namespace)
            element = top.child(name, look, quiet=quiet)
            if namespace:
                element.foreign = True
                element.point = holds_html(name, namespace, attributes)
                element.special = element.scope = element.point or name == "annotation-xml"
                element.wall = element.bound = element.special
                element.context = element.marker = False
                element.tracked = element.special
            if name != "table":  # a table's lists are its own
                if len(self.made) >= _MADE_MOST:  # kept, it would hold every element
                    self.made.clear()
                self.made[key] = element
        return element

    def _open(self, element: _Element) -> None:
        """Show what the element shows where it opens, and keep it open (but a void one)."""
        container, look = element.container, element.look
        if element.name == "table":
            container.append(element.fostered)
        if element.breaks:
            container.append("\n")
        if look.shows and element.style.readable and self.showing and not self.foreign:
            container.append(look.shows)
        if element.name == "table":
            container.append(element.segment)
        if element.name not in _VOID:
            self._push(element)

    def _push(self, element: _Element) -> None:
        """Keep the element open."""
        if element.tracked:
            self._mark(element)
        self.stack.append(element)
        if element.name == "template" and not element.foreign:
            self.outside.append(self.open)
            self.open = {}
        if (places := self.open.get(element.name)) is None:
            self.open[element.name] = [len(self.stack) - 1]
        else:
            places.append(len(self.stack) - 1)
        if element.look.reverses:
            element.segment.append(OVERRIDE)

    def end(self, name: str) -> None:
        if self.breaking:
            self._break_out()
        if name in _KEPT_OPEN:
            return
        top = self.stack[-1]
        # The usual case, in short (but where one of its name waits to open again: below)
        if top.name == name and not top.look.reverses and not (
                self.closed and self.closed_at.get(name)):
            self.stack.pop()
            self.open[name].pop()
            if top.tracked:
                self._unmark(top)
            if name == "template":
                self._left(top)
            if top.breaks:
                top.container.append("\n")
            return
        if name == "p" and not self._p_in_scope():
            # HTML's tree builder reads it as <p></p>: a line break, though in no <p>
            # (<mtext>via</p>gra) and where the last <p> is past a <td> or <foreignObject>.
            self._open(self._element(name, ""))
            self.end(name)
            return
        if name == "br":  # HTML's tree builder reads </br> as <br>: a line break
            self.start(name, "")
            return
        if places := self.closed_at.get(name):
            # A formatting element closed around it, the last of its name in HTML's list
            # of them (any open one is before it): closed itself, not reopened, and what
            # is open stays (``<i hidden><div><i></div></i>x`` hides x).
            self.closed[places.pop()] = None
            return
        if not self.open.get(name) and name not in _HEADINGS:
            return
        place = self._closes(name)
        if place < 0:
            return
        if name in _FORMATTING and not self.stack[place].foreign and (
                walls := self._walls_after(place)):
            self._adopt(place, walls)
        else:
            self._close_to(place)

    def _closes(self, name: str) -> int:
        """The place of the element the end tag ``name`` closes, -1 where it closes none
        (see _SCOPED_ENDS)."""
        if name in _HEADINGS:
            return self._scoped(max(_last(self.open.get(heading)) for heading in _HEADINGS))
        place = _last(self.open.get(name))
        if self.stack[-1].foreign and self.stack[place].foreign:
            return place  # SVG and MathML's rule: the last of its name (foreigncontent
            # leaves out those their rules ignore)
        if name in _SCOPED_ENDS:
            return self._scoped(place)
        if name == "li":  # list item scope: no list after it either
            lists = max(_last(self.open.get(kind)) for kind in _LISTS)
            return self._scoped(place) if place > lists else -1
        if name in _WALLS:  # a table's, a template's, a form's...: as before
            return place
        return place if place >= _last(self.walls) else -1

    def _scoped(self, place: int) -> int:
        """``place``, or -1 if an element of default scope is open after it."""
        return place if place >= 0 and place >= _last(self.bounds) else -1

    def _close_to(self, place: int) -> None:
        """Close the element at ``place`` in stack and all open after it."""
        popped: list[_Element] = []
        while len(self.stack) > place:
            element = self._drop()
            self._left(element)
            if element.breaks:
                element.container.append("\n")
            if element.marker:  # what it held is forgotten, not opened again
                popped.clear()
            elif len(self.stack) > place:
                popped.append(element)
        for element in reversed(popped):
            self._keep(element)

    def _drop(self) -> _Element:
        """Take the current element off the stack (its end shows nothing but a bidi
        override's)."""
        element = self.stack.pop()
        self.open[element.name].pop()
        if element.tracked:
            self._unmark(element)
        if element.look.reverses:
            element.segment.append(POP)
        return element

    def _walls_after(self, place: int) -> list[int]:
        """The places of the first _Element.wall ones open after ``place``, as many as
        the adoption agency moves past at most: a few."""
        first = bisect_right(self.walls, place)
        return self.walls[first:first + _ADOPTIONS]

    def _adopt(self, place: int, walls: list[int]) -> None:
        """A formatting element's end tag with special elements (``walls``) open after
        it (``place``), by HTML's adoption agency: each of them, up to eight, is moved
        out of what opened before it into the last one moved (the first into what the
        formatting element is in), with the formatting elements among the three before
        it opened again there; then, with fewer than eight, what is open after the last
        is closed (the formatting element copied into it too: ``<b hidden><div>a</b>b``
        shows b), else the formatting element and all after it are opened again in the
        eighth. What the elements moved held before stays where it showed. Linear: what
        is looked at is closed or moved, and what was after the eighth only while the
        budget lasts (past it, the end tag is ignored)."""
        last = walls[-1]
        if len(walls) == _ADOPTIONS:
            self.budget -= len(self.stack) - last
            if self.budget < 0:
                return
        old = [self._drop() for _ in range(len(self.stack) - place)][::-1]
        after = place
        for wall in walls:
            for element in old[max(after + 1, wall - _ADOPTED_NEAR) - place:wall - place]:
                if element.name in _FORMATTING and not element.foreign:
                    self._push(element.adopted(self.stack[-1]))
            self._push(old[wall - place].adopted(self.stack[-1]))
            after = wall
        rest = old[last + 1 - place:]
        if len(walls) == _ADOPTIONS:
            for element in [old[0], *rest]:
                self._push(element.adopted(self.stack[-1]))
            return
        for element in reversed(rest):
            if element.breaks:
                element.container.append("\n")
        for element in rest:
            self._keep(element)

    def _keep(self, element: _Element) -> None:
        """Keep an element closed by no end tag of its own to open it again, if it is a
        formatting element (HTML's list of them holds no SVG or MathML one)."""
        if element.name in _FORMATTING and not element.foreign:
            self.closed_at.setdefault(element.name, []).append(len(self.closed))
            self.closed.append(element)

    def _left(self, element: _Element) -> None:
        """Count again what is open outside an HTML template just closed."""
        if element.name == "template" and not element.foreign:
            self.open = self.outside.pop()

    def _mark(self, element: _Element) -> None:
        """Note the place of an element about to open (_Element.tracked)."""
        place = len(self.stack)
        if element.special:
            self.specials.append(place)
        if element.context:
            self.contexts.append(place)
        if element.scope:
            self.scopes.append(place)
        if element.wall:
            self.walls.append(place)
        if element.bound:
            self.bounds.append(place)
        if element.marker:  # None: nothing closed before it, the lists kept (no copies)
            self.markers.append((self.closed, self.closed_at) if self.closed else None)
            if self.closed:
                self.closed, self.closed_at = [], {}

    def _unmark(self, element: _Element) -> None:
        """Forget the place of an element just closed."""
        if element.special:
            self.specials.pop()
        if element.context:
            self.contexts.pop()
        if element.scope:
            self.scopes.pop()
        if element.wall:
            self.walls.pop()
        if element.bound:
            self.bounds.pop()
        if element.marker:  # what closed in it is forgotten, what closed before it back
            if (before := self.markers.pop()) is None:
                self.closed.clear()
                self.closed_at.clear()
            else:
                self.closed, self.closed_at = before

    def _p_in_scope(self) -> bool:
        """Whether a <p> is open in button scope (see _P_SCOPE): the last of them open."""
        return bool(self.scopes) and self.stack[self.scopes[-1]].name == "p"

    def _close_implied(self, name: str) -> None:
        if name == "table" and self.contexts and \
                self.stack[self.contexts[-1]].name not in ("td", "th", "template"):
            self.end("table")  # a table cannot hold one but in a cell: it ends the first
        if name in _CLOSES_P and self._p_in_scope():
            self.end("p")
        if name in _HEADINGS and (top := self.stack[-1].name) in _HEADINGS:
            self.end(top)  # a heading is no heading's child (<h1 hidden>a<h2>b shows b)
        if name in _ENDS_OWN:
            self.end(name)
        if name in TABLE_PARTS and self.open.get("table") and not self.open.get("template"):
            self._close_in_table(name)
        if name in _LIST_ITEMS and self.specials and (
                item := self.stack[self.specials[-1]].name) in _LIST_ITEMS[name]:
            self.end(item)
        siblings = _SIBLINGS.get(name, ())
        while self.stack[-1].name in siblings:
            self.end(self.stack[-1].name)

    def _break_out(self) -> None:
        self.breaking = False  # once for the tag
        while self.stack[-1].foreign and not self.stack[-1].point:
            self.end(self.stack[-1].name)

    def _close_in_table(self, part: str) -> None:
        """Close what is open in the last table after the last element the table part
        ``part`` goes in (or the table), as its start tag does (``<td><span hidden><td>x``
        shows x); where it is in none, open the one it implies (a cell a row, a row a
        section: ``<table><td>a</tr>x`` ends the cell, x fostered). Linear: all that is
        looked at is closed (looked at up to twice more first where parts are implied). A
        formatting element closed so opens again where readers open it (after the table:
        ``<table><b hidden>a<td>b</table>c`` shows b, not c)."""
        kept = TABLE_PARTS[part]
        place = len(self.stack) - 1
        while self.stack[place].name not in kept and self.stack[place].name != "table":
            place -= 1
        if self.stack[place].name == "table" and (implied := IMPLIED_PARTS.get(part)):
            self._close_in_table(implied)
            self._open(self._element(implied, ""))
            return
        while len(self.stack) > place + 1:
            element = self.stack[-1]
            self.end(element.name)  # the last of its name: it alone closes
            self._keep(element)

    def _reopen(self) -> None:
        closed = [element for element in self.closed if element is not None]
        self.closed, self.closed_at = [], {}
        self.budget -= len(closed)
        if self.budget < 0:
            return  # past the bound: left closed (see the class text)
        for element in closed:
            self._open(self.stack[-1].child(element.name, element.look, quiet=True))

    def shown(self) -> str:
        """What showed, in order: the nested lists read depth first."""
        pieces: list[str] = []
        todo = [iter(self.root)]
        while todo:
            for item in todo[-1]:
                if isinstance(item, str):
                    pieces.append(item)
                else:
                    todo.append(iter(item))
                    break
            else:
                todo.pop()
        return "".join(pieces)


def _last(places: list[int] | None) -> int:
    """The last of ``places``, -1 for none."""
    return places[-1] if places else -1


def render_visible(text: str) -> str:
    """What a reader shows of the HTML ``text``, leaving out what its CSS (inline, or
    in ``<style>`` sheets with simple selectors), ``hidden`` attributes or colours
    hide: ``display: none``, ``visibility: hidden``, a font under 2 px (``font-size:
    0``, ``font: 0/0 a``), ``opacity`` of at most 0.1, a transparent colour or the
    background's, a zero height or width with ``overflow: hidden``, Outlook's
    ``mso-hide: all``, a place off the screen, and ``<template>`` content (see
    :mod:`~postwarden_policies.inlinestyle`); nor what an SVG ``<style>``
    holds, as nothing of an HTML one (its sheet: shown, it gave rules CSS text), nor
    SVG's text outside its ``<text>`` elements, which it never draws (in a ``<g>``, a
    ``<desc>``: :attr:`~postwarden_policies.foreigncontent._OpenElements.shown`). An
    element CSS makes inline breaks no line, nor an SVG or MathML one named as an HTML
    block (``<svg><text>via<section/>gra``); ``<bdo dir=rtl>`` and a CSS bidi override
    are drawn reversed; images show their alt text (as with images off), inputs their
    value and textareas their text.

    The tokens are :func:`~postwarden_policies.bodytext.render_html`'s (split into the
    parts of each tag); :class:`_Walk` tells what each element holds.
    """
    walk = _Walk(budget=len(text) // 4, sheet=read_style_sheets(text, PROPERTIES))
    for start, end, reading, walk.showing, walk.foreign, walk.breaking in shown_readings(text):
        _read(walk, text[start:end], reading)
    return walk.shown()


def _read(walk: _Walk, text: str, reading: Reading) -> None:
    """Take in the tokens of ``text``, all read as ``reading``."""
    shows, starts, ends = walk.text, walk.start, walk.end  # looked up once, not per tag
    rest = text
    while True:
        # A batch of tags at a time: split whole, 4,000,000 characters of tags made
        # lists of seven items per tag (a hundred MB). The tokens look behind nothing,
        # so the rest splits as it would have.
        parts = reading.tokens.split(rest, maxsplit=_SPLIT_BATCH)
        rest = parts.pop()
        # Eight at a time: the text before a piece of markup, then its groups.
        for before, cdata, end_name, _, _, written, attributes, content in zip(
                *[iter(parts)] * 8, strict=True):
            if before:
                shows(before)
            if end_name:
                ends(ascii_lower(end_name))
            elif written:  # what is no tag has no name
                name = ascii_lower(written)
                starts(name, attributes)
                # Of raw text, readers show a textarea's and <plaintext>'s (all the
                # rest of the document, as it is: no references) only.
                if content and name in _SHOWN_RAW:
                    shows(content, literal=name == "plaintext")
            elif cdata:  # a CDATA section's text, in SVG or MathML: no references
                shows(cdata, literal=True)
        if len(parts) < 8 * _SPLIT_BATCH:  # no tag past them: what is left is text
            break
    if rest:
        shows(rest)
