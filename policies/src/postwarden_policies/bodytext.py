"""Text as mail readers show it, for body rules: HTML rendered, format=flowed unwrapped.

A body rule searches each text part as written and, where readers show
something else, also this rendering of it. So ``vi&#97;gra``, ``via<b></b>gra``
and a flowed ``via `` + line break + ``gra`` all read ``viagra``.

The milter runs this on every message, so it is cheap: one split by a linear
regular expression (possessive quantifiers, no backtracking) and
``html.unescape``; no tree is built. The tokenizer follows the HTML standard
where a difference could hide text: a quote opens an attribute value only
right after ``=``, so ``<b a"b>`` and ``<b x='>'>`` end where a browser ends
them; comments end at ``-->`` (``<!-->`` at once); ``<script>``, ``<style>``,
``<title>``, ``<textarea>`` and the other raw-text elements end only at their
own end tag, whatever their content looks like; an unclosed tag or quote runs
to the end. Block-level tags become line breaks (table cells do not run
together), other tags vanish. Text readers hide by CSS is still searched.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator, Mapping

from .facts import MimePart
from .html_precheck import trie

_WS = "\t\n\f\r "
# A tag's attributes, as the HTML tokenizer reads them; then its end.
_ATTRIBUTE_LIST = (
    rf"(?:[{_WS}/]*+[^{_WS}/>][^{_WS}/>=]*+"
    rf"(?:[{_WS}]*+=[{_WS}]*+(?:\"[^\"]*+(?:\"|\Z)|'[^']*+(?:'|\Z)|[^{_WS}>]*+))?)*+[{_WS}/]*+"
)
_ATTRIBUTES = _ATTRIBUTE_LIST + r"(?:>|\Z)"
_NAME_END = rf"(?=[{_WS}/>]|\Z)"
# Raw-text elements left out of the rendering: readers do not show their content
# (title: not in the body), or show it as written (xmp), which the source covers.
_HIDDEN = ("script", "style", "title", "iframe", "noembed", "noframes", "xmp")
_RAW = (*_HIDDEN, "textarea", "plaintext")
_BLOCK = (
    "address article aside blockquote br caption center dd details dir div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hr legend li main menu nav ol p "
    "pre section summary table tbody td tfoot th thead tr ul"
).split()
# Parts written in tags of their own that readers render (RFC 1896 and its predecessor):
# the HTML tokenizer removes their commands too.
_TAGGED_TYPES = frozenset({"text/enriched", "text/richtext"})
# A flowed line's trailing space and line break, and the next line's quote marks
# or stuffed space (RFC 3676 section 4).
_FLOWED_BREAK = re.compile(r" \r?\n(?:>+ ?| )?")


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
    content = "(.*?)" if keep else ".*?"
    return rf"{_names([name])}{_ATTRIBUTES}{content}(?=</{_names([name])}|\Z)"


# Every piece of markup. re.split keeps the two groups: a textarea's content
# (shown as text, references decoded) and the ">" ending a block-level tag,
# turned into a line break afterwards (re.split runs no Python code per tag,
# which a replacement function or a group template would).
_BLOCK_TAG = rf"{_names(_BLOCK)}{_ATTRIBUTE_LIST}(>|\Z)"
_TAG = rf"[a-zA-Z][^{_WS}/>]*+{_ATTRIBUTES}"
_MARKUP = re.compile(
    "<(?:"
    r"!(?:--(?:-?>|.*?(?:--!?>|\Z))|[^>]*+(?:>|\Z))"  # comment; doctype, bogus comment
    r"|\?[^>]*+(?:>|\Z)"
    rf"|/(?:{_BLOCK_TAG}|{_TAG}|[^>]*+(?:>|\Z))"
    rf"|(?=[a-zA-Z])(?:(?={_names(_RAW)})(?:"
    + "|".join(_raw_text(name, keep=False) for name in _HIDDEN)
    + rf"|{_raw_text('textarea', keep=True)}|{_names(['plaintext'])}.*)"  # plaintext: as written
    + rf"|{_BLOCK_TAG}|{_TAG})"
    ")",
    re.DOTALL,
)


def render_html(text: str) -> str:
    """The text a reader shows for the HTML ``text``: tags removed, references decoded.

    A ">" left in the text is read as a line break too: harmless to a search,
    and the one kept from each block-level tag becomes one.
    """
    shown = "".join(filter(None, _MARKUP.split(text)))
    return html.unescape(shown.replace(">", "\n"))


def unwrap_flowed(text: str, delsp: bool) -> str:
    """``text`` (format=flowed) with its soft line breaks joined as readers join them."""
    if " \n" not in text and " \r\n" not in text:
        return text  # no soft break: skip the regex, which stops at every space
    return _FLOWED_BREAK.sub("" if delsp else " ", text)


def renders(part: MimePart, params: Mapping[str, str]) -> bool:
    """Whether readers may show the text part otherwise than as written."""
    return (part.is_html or part.content_type in _TAGGED_TYPES
            or (part.content_type == "text/plain" and _param(params, "format") == "flowed"))


def rendering(part: MimePart, params: Mapping[str, str], text: str) -> str | None:
    """What readers show of the text part's ``text`` where that differs from it, else None.
    Never longer than ``text``: tags and references only shrink, breaks only join."""
    if part.is_html or part.content_type in _TAGGED_TYPES:
        shown = render_html(text)
    elif part.content_type == "text/plain" and _param(params, "format") == "flowed":
        shown = unwrap_flowed(text, _param(params, "delsp") == "yes")
    else:
        return None
    return shown if shown != text else None


Source = tuple[MimePart, Mapping[str, str], str]  # a part, its parameters, its kept text


class Renderings:
    """The renderings of a message's text parts, worked out the first time a body rule
    asks for them: a rule that matches the text as written, or a message no body rule
    reaches, costs nothing (rendering 60 KB of HTML takes about 1.4 ms)."""

    __slots__ = ("_sources", "_texts")

    def __init__(self, sources: Iterable[Source] = ()) -> None:
        self._sources = tuple(sources)
        self._texts: tuple[str, ...] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._texts is None:
            shown = (rendering(part, params, text) for part, params, text in self._sources)
            self._texts = tuple(text for text in shown if text is not None)
            self._sources = ()
        return iter(self._texts)


def _param(params: Mapping[str, str], name: str) -> str:
    return params.get(name, "").strip().lower()
