"""Text as mail readers show it, for body rules: HTML rendered, format=flowed unwrapped.

A body rule searches each text part as written and, where readers show
something else, also this rendering of it. So ``vi&#97;gra``, ``via<b></b>gra``
and a flowed ``via `` + line break + ``gra`` all read ``viagra``.

The milter runs this on every message, so it is cheap: one split by a linear
regular expression (:mod:`~postwarden_policies.htmltokens`, which follows the
HTML tokenizer where a difference could hide text) and ``html.unescape``; no
tree is built (HTML with an ``<svg`` or ``<math`` start tag is first read a tag at a
time, to tell where their content is: :func:`~.foreigncontent.readings`). Block-level
tags become line breaks (table cells do not run together), other tags vanish.

Characters readers draw as nothing (Unicode's default-ignorable code points:
zero-width spaces and joiners, the soft hyphen, bidi controls, variation
selectors, tag characters) are left out of every rendering, plain text's too,
so ``via\u200bgra`` and ``via&shy;gra`` read ``viagra``. Text outside ASCII is
read in Unicode's compatibility form (NFKC) too, where that differs: fullwidth
``\uff46\uff52\uff45\uff45`` and mathematical ``\U0001d41f\U0001d42b\U0001d41e\U0001d41e``
read ``free``. A word that mixes Latin letters with Cyrillic or Greek ones
is read with those as the Latin letters they look like too
(:mod:`~postwarden_policies.lookalikes`): ``P\u0430ypal`` reads ``Paypal``.

HTML with a ``style``, ``hidden``, ``color`` or ``bgcolor`` attribute (or a
``<style>`` sheet) gets a second rendering without the text readers hide
(:mod:`~postwarden_policies.visiblehtml`); the first, with it, is still
searched, so a rule still finds a hidden keyword. HTML with
conditional comments is rendered as Outlook shows it too
(:mod:`~postwarden_policies.conditionalcomments`).
"""

from __future__ import annotations

import functools
import html
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain

from .conditionalcomments import as_outlook_shows
from .facts import MimePart
from .foreigncontent import readings
from .htmltokens import Reading
from .lookalikes import as_latin
from .visiblehtml import OVERRIDE, render_visible

# Parts written in tags of their own that readers render (RFC 1896 and its predecessor):
# the HTML tokenizer removes their commands too.
_TAGGED_TYPES = frozenset({"text/enriched", "text/richtext"})
NFKC_SLICE = 1 << 16  # characters normalized at a time (compatibility_form)
# Where a slice may end: before a character that is its own compatibility form, of
# combining class 0 and the second part of no composition, so the text normalizes the
# same in two pieces as whole (tested for each). ASCII, and the letters of the scripts
# long text without one is written in: Greek, Cyrillic, Hebrew, Arabic, Thai, kana,
# CJK ideographs, Hangul syllables.
NFKC_CUT_RANGES = (
    "\x00-\x7f\u0391-\u03a1\u03a3-\u03a9\u03b1-\u03c9\u0410-\u044f\u05d0-\u05ea"
    "\u0621-\u063a\u0641-\u064a\u0e01-\u0e2e\u3041-\u3096\u30a1-\u30fa"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3"
)
NFKC_CUT = re.compile(f"[{NFKC_CUT_RANGES}]")
# A flowed line's trailing space and line break, and the next line's quote marks
# or stuffed space (RFC 3676 section 4).
_FLOWED_BREAK = re.compile(r" \r?\n(?:>+ ?| )?")

# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): drawn as
# nothing, so a reader shows the word they split whole.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]+"
)


# A right-to-left override: the characters up to its end (a pop, another bidi
# control, the paragraph's end) are drawn in reverse, "\u202eargaiv" as "viagra".
_OVERRIDDEN = re.compile("\u202e([^\u202a-\u202e\u2066-\u2069\n\r\u2029]*+)")


# Where readers break a line (NEL, the line and paragraph separators) or leave a space
# (U+1680), none of which RE2's \s takes for blank: "free", U+2028, "money" is two words
# to a reader, one run to a rule written free\s+money.
_SEPARATORS = re.compile("[\x85\u1680\u2028\u2029]")
_AS_BLANKS = str.maketrans({"\x85": "\n", "\u1680": " ", "\u2028": "\n", "\u2029": "\n"})


def visible_characters(text: str) -> str:
    """``text`` as drawn: overridden runs reversed, invisible characters left out, the
    separators readers draw as a line break or a space written as one."""
    if text.isascii():  # O(1): the common case costs nothing
        return text
    if OVERRIDE in text:
        text = _OVERRIDDEN.sub(lambda run: run.group(1)[::-1], text)
    if _SEPARATORS.search(text):
        text = text.translate(_AS_BLANKS)
    return _INVISIBLE.sub("", text)


def compatibility_form(text: str, room: int) -> str:
    """``text`` in Unicode's compatibility form (NFKC), as letters read: fullwidth,
    mathematical, circled, superscript and ligature forms as the plain letters,
    within ``room`` characters: where expanding (``\ufb01`` to ``fi``, ``\u2026`` to
    ``...``) would go past it, only the characters whose form is one character are
    changed, each to it (no character expands, no sequence composes).

    Normalized a slice at a time (one character may become 18), each cut before a
    character nothing composes with as its second part (``NFKC_CUT_RANGES``): the
    work and the memory stop at ``room``, or at the first slice that expands past its
    share of it, whatever the text holds."""
    if text.isascii() or unicodedata.is_normalized("NFKC", text):  # the common cases
        return text
    pieces: list[str] = []
    size = start = 0
    while start < len(text):
        cut = NFKC_CUT.search(text, min(start + NFKC_SLICE, len(text)))
        stop = len(text) if cut is None else cut.start()
        if stop - start > 2 * NFKC_SLICE:  # no place to cut in reach
            return _one_for_one(text)
        piece = unicodedata.normalize("NFKC", text[start:stop])
        size += len(piece)
        # Past the room, or on the way there: a slice past its share of the room (and a
        # slice's worth more) means text made to expand, not to read.
        if size > room or len(piece) > room * (stop - start) // len(text) + NFKC_SLICE:
            return _one_for_one(text)
        pieces.append(piece)
        start = stop
    return "".join(pieces)


def _one_for_one(text: str) -> str:
    # In C and in place: no piece per character, which 4,000,000 characters would make
    # hundreds of megabytes of.
    return text.translate(_single_forms())


@functools.cache
def _single_forms() -> dict[int, str]:
    """Each character whose compatibility form is another single character, to it
    (3,629 in Unicode 14): built on first use, in about 180 ms."""
    table = {}
    for code in range(sys.maxunicode + 1):
        form = unicodedata.normalize("NFKC", chr(code))
        if len(form) == 1 and form != chr(code):
            table[code] = form
    return table


def render_html(text: str) -> str:
    """The text a reader shows for the HTML ``text``: tags removed, references decoded.

    A ">" left in the text is read as a line break too: harmless to a search,
    and the one kept from each block-level tag becomes one.
    """
    # Each stretch split as HTML's tokenizer reads it (SVG and MathML content too), the
    # pieces joined in C, by a NUL (which readers show as nothing) that ends a reference
    # where markup ended it: joined by nothing, "&<b></b>no<b></b>tice" read "\xacice"
    # (&not), which readers show as "&notice".
    shown = "\0".join(chain.from_iterable(
        filter(None, _pieces(text[start:end], reading))
        for start, end, reading in readings(text)))
    return html.unescape(shown.replace(">", "\n")).replace("\0", "")


def _pieces(text: str, reading: Reading) -> list[str | None]:
    """``text`` split by ``reading``'s markup (None for a group a tag did not set), a
    CDATA section's text and all after a <plaintext> tag escaped: they hold no
    references and no tag, so ``<![CDATA[vi&#97;gra]]>`` shows ``vi&#97;gra`` and its
    ">" breaks no line."""
    pieces: list[str | None] = reading.markup.split(text)
    step = reading.markup.groups + 1
    if (group := reading.markup.groupindex.get("cdata")) is not None:
        pieces[group::step] = [piece and html.escape(piece, quote=False)
                               for piece in pieces[group::step]]
    # A <plaintext> runs to the end: only the last tag can be one.
    if (group := reading.markup.groupindex.get("plaintext")) is not None and len(pieces) > 1:
        last = len(pieces) - step - 1 + group
        if shown := pieces[last]:
            pieces[last] = html.escape(shown, quote=False)
    return pieces


# HTML whose reader shows it otherwise than render_html does: style attributes (or
# elements), the hidden attribute, color and bgcolor attributes, <template>, <bdo>,
# tables (which move text out of place before them), SVG (which draws text only in
# its <text>) and MathML (whose elements named as HTML blocks break no line), alt text
# and input values.
# Looked for in the lower-cased text, with "in" (sre, caseless, is ten times slower).
_SHOWN_OTHERWISE = ("style", "hidden", "color", "template", "<bdo", "<table", "<svg",
                    "<math")
_SHOWN_ATTRIBUTE = re.compile(r"(?:alt|value)\s*=")


def unwrap_flowed(text: str, delsp: bool) -> str:
    """``text`` (format=flowed) with its soft line breaks joined as readers join them."""
    if " \n" not in text and " \r\n" not in text:
        return text  # no soft break: skip the regex, which stops at every space
    return _FLOWED_BREAK.sub("" if delsp else " ", text)


def rendering(part: MimePart, params: Mapping[str, str], text: str) -> tuple[str, ...]:
    """What readers show of the text part's ``text``, where that differs from it: HTML
    with text hidden by CSS twice, with and without that text, and with conditional
    comments as browsers and as Outlook read them; each also in its compatibility
    form, and that with its mixed words' lookalikes as Latin (one letter for one).
    Each is never longer than ``text`` (tags, references and invisible characters
    only shrink, breaks only join), a compatibility form never twice as long: a
    text with one ``\u2026`` (``...``) in it is common, and keeping its form within
    the text's length would cost five times as much."""
    if part.is_html or part.content_type in _TAGGED_TYPES:
        shown = [render_html(text), *(_other_views(text) if part.is_html else ())]
    elif part.content_type == "text/plain" and _param(params, "format") == "flowed":
        shown = [unwrap_flowed(text, _param(params, "delsp") == "yes")]
    else:
        shown = [text]
    return _readings(shown, text)


# Blanks a one-line value (a Subject, a header value) shows as one space: a tab, which
# folding leaves in it (Exchange folds with CRLF TAB: "free\tmoney"), and runs of them.
_LINE_BLANKS = re.compile(r"[ \t]{2,}|\t")


def line_readings(line: str) -> tuple[str, ...]:
    """How readers read the one line ``line`` (a Subject, a header value), where that
    differs from it: its tabs and runs of blanks as one space, without its invisible
    characters, in its compatibility form, lookalikes as Latin."""
    return _readings([_LINE_BLANKS.sub(" ", line)], line)


LINE_READ_MOST = 16_384  # characters of one Subject or header value read otherwise
LINES_READ_MOST = 1_000_000  # characters of them read otherwise, per message


class LineReadings:
    """A message's Subject and header values as readers read them (:func:`line_readings`),
    each worked out once whatever the rules that ask: of a value, its first
    :data:`LINE_READ_MOST` characters; of the header values, :data:`LINES_READ_MOST`
    in all (past that, they are read as written only). The header count has no limit
    but the message's size: hundreds of long values must not cost seconds. The
    Subject, one per message, is not counted: headers a sender pads must not leave it
    read as written only. ASCII without a tab or run of blanks reads no otherwise, and
    costs a search for them."""

    __slots__ = ("_found", "_left")

    def __init__(self) -> None:
        self._found: dict[str, tuple[str, ...]] = {}
        self._left = LINES_READ_MOST

    def of(self, line: str, counted: bool = True) -> tuple[str, ...]:
        # What _LINE_BLANKS finds, by two scans in C: most values are ASCII with neither.
        if line.isascii() and "\t" not in line and "  " not in line:
            return ()
        found = self._found.get(line)
        if found is None:
            read = line[:LINE_READ_MOST]
            if counted:
                if len(read) > self._left:
                    return ()
                self._left -= len(read)
            found = self._found[line] = line_readings(read)
        return found


def _readings(shown: list[str], text: str) -> tuple[str, ...]:
    """The ``shown`` views of ``text`` as drawn, each also in its compatibility form and
    that with the lookalikes of its mixed words as Latin: those that differ from it."""
    views = dict.fromkeys(visible_characters(view) for view in shown)
    forms = [compatibility_form(view, 2 * len(text)) for view in views]
    views.update(dict.fromkeys(forms))
    views.update(dict.fromkeys(map(as_latin, forms)))
    return tuple(view for view in views if view != text)


def _other_views(text: str) -> list[str]:
    """The HTML ``text`` as readers show it where :func:`render_html` does not tell:
    with hidden text left out, and as Outlook reads its conditional comments."""
    lowered = text.lower()
    sources = [text]
    views = []
    if "[if" in lowered:
        sources.append(as_outlook_shows(text))
        views.append(render_html(sources[-1]))
    if any(word in lowered for word in _SHOWN_OTHERWISE) or (
        ("alt" in lowered or "value" in lowered) and _SHOWN_ATTRIBUTE.search(lowered)
    ):
        views += map(render_visible, sources)
    return views


Source = tuple[MimePart, Mapping[str, str], str]  # a part, its parameters, its kept text


class Renderings:
    """The renderings of a message's text parts, worked out the first time a body rule
    asks for them: a rule that matches the text as written, or a message no body rule
    reaches, costs nothing (rendering 60 KB of HTML takes about 3 ms, 0.6 ms of it
    render_html's, the rest render_visible's, 2.5 ms more with a 16 KB style sheet;
    200 KB of text outside ASCII 3 ms, 7 ms with a fullwidth letter, 17 ms with an
    ellipsis, whose compatibility form is longer, 0.8 ms more to look in 200 KB of
    Russian for words that mix scripts)."""

    __slots__ = ("_sources", "_texts")

    def __init__(self, sources: Iterable[Source] = ()) -> None:
        self._sources = tuple(sources)
        self._texts: tuple[str, ...] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._texts is None:
            self._texts = tuple(
                view for part, params, text in self._sources
                for view in rendering(part, params, text)
            )
            self._sources = ()
        return iter(self._texts)


def _param(params: Mapping[str, str], name: str) -> str:
    return params.get(name, "").strip().lower()
