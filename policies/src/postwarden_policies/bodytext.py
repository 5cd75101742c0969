"""Text as mail readers show it, for body rules: HTML rendered, format=flowed unwrapped.

A body rule searches each text part as written and, where readers show
something else, also this rendering of it. So ``vi&#97;gra``, ``via<b></b>gra``
and a flowed ``via `` + line break + ``gra`` all read ``viagra``.

The milter runs this on every message, so it is cheap: one split by a linear
regular expression (:mod:`~postwarden_policies.htmltokens`, which follows the
HTML tokenizer where a difference could hide text) and ``html.unescape``; no
tree is built. Block-level tags become line breaks (table cells do not run
together), other tags vanish.

Characters readers draw as nothing (Unicode's default-ignorable code points:
zero-width spaces and joiners, the soft hyphen, bidi controls, variation
selectors, tag characters) are left out of every rendering, plain text's too,
so ``via\u200bgra`` and ``via&shy;gra`` read ``viagra``.

HTML with a ``style`` or ``hidden`` attribute gets a second rendering without
the text readers hide (:mod:`~postwarden_policies.visiblehtml`); the first, with
it, is still searched, so a rule still finds a hidden keyword. HTML with
conditional comments is rendered as Outlook shows it too
(:mod:`~postwarden_policies.conditionalcomments`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator, Mapping

from .conditionalcomments import as_outlook_shows
from .facts import MimePart
from .htmltokens import MARKUP
from .visiblehtml import OVERRIDE, render_visible

# Parts written in tags of their own that readers render (RFC 1896 and its predecessor):
# the HTML tokenizer removes their commands too.
_TAGGED_TYPES = frozenset({"text/enriched", "text/richtext"})
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


def visible_characters(text: str) -> str:
    """``text`` as drawn: overridden runs reversed, invisible characters left out."""
    if text.isascii():  # O(1): the common case costs nothing
        return text
    if OVERRIDE in text:
        text = _OVERRIDDEN.sub(lambda run: run.group(1)[::-1], text)
    return _INVISIBLE.sub("", text)


def render_html(text: str) -> str:
    """The text a reader shows for the HTML ``text``: tags removed, references decoded.

    A ">" left in the text is read as a line break too: harmless to a search,
    and the one kept from each block-level tag becomes one.
    """
    shown = "".join(filter(None, MARKUP.split(text)))
    return html.unescape(shown.replace(">", "\n"))


# HTML whose reader shows it otherwise than render_html does: style attributes (or
# elements), the hidden attribute, <template>, <bdo>, tables (which move text out
# of place before them), alt text and input values.
# Looked for in the lower-cased text, with "in" (sre, caseless, is ten times slower).
_SHOWN_OTHERWISE = ("style", "hidden", "template", "<bdo", "<table")
_SHOWN_ATTRIBUTE = re.compile(r"(?:alt|value)\s*=")


def unwrap_flowed(text: str, delsp: bool) -> str:
    """``text`` (format=flowed) with its soft line breaks joined as readers join them."""
    if " \n" not in text and " \r\n" not in text:
        return text  # no soft break: skip the regex, which stops at every space
    return _FLOWED_BREAK.sub("" if delsp else " ", text)


def rendering(part: MimePart, params: Mapping[str, str], text: str) -> tuple[str, ...]:
    """What readers show of the text part's ``text``, where that differs from it: HTML
    with text hidden by CSS twice, with and without that text, and with conditional
    comments as browsers and as Outlook read them. Each is never longer than
    ``text``: tags, references and invisible characters only shrink, breaks only join."""
    if part.is_html or part.content_type in _TAGGED_TYPES:
        shown = [render_html(text), *(_other_views(text) if part.is_html else ())]
    elif part.content_type == "text/plain" and _param(params, "format") == "flowed":
        shown = [unwrap_flowed(text, _param(params, "delsp") == "yes")]
    else:
        shown = [text]
    views = dict.fromkeys(visible_characters(view) for view in shown)
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
    reaches, costs nothing (rendering 60 KB of HTML takes about 9 ms, 1.4 ms of it
    render_html's, the rest render_visible's; 200 KB of text outside ASCII 3 ms)."""

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
