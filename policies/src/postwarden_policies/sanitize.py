"""The HTML sanitizer for email, built on nh3 (ammonia).

The allowlist keeps what mail layout needs (tables, fonts, inline styles
filtered by property, ``class``, ``cid:`` images) and drops everything that
runs code or leaves the message: scripts, event handlers, forms, frames,
objects, embeds, ``<base>``, ``<meta>``, SVG and MathML, and URLs whose scheme
is not allowed. Inline styles lose declarations with ``expression(``,
``url(``, ``behavior`` or ``javascript:``, but a background image an ``<img src>``
could show (:func:`_background_image`; so the ``background`` attribute). ``data:``
URLs survive only as ``<img src="data:image/(png|gif|jpeg|webp);...">`` (or such a
background image): they are part of the message, so they track nobody, and raster
images run no code; this holds in both ``remote_images`` modes.
``remote_images: strip`` drops ``src`` (and background images) served over http(s).
A link keeps ``target`` only as ``_blank``, where browsers imply ``rel="noopener"``;
nh3 adds no ``rel``, so a link goes out with the attributes it has whether its part is
cleaned or goes out as it came.

nh3 cleans a fragment, so the ``<html>`` and ``<body>`` tags go with their attributes:
what they set for the page goes on a ``<div>`` around the clean HTML, cleaned as any
tag: the colours (``bgcolor``, ``text``, a style), or text written white on a black
page showed white on white, and ``dir`` and ``lang``, or a Hebrew or Arabic page was
laid out left to right. Dropped on
purpose: ``<base href>``, which points every relative link at a host of the sender's
choosing, and splits a URL so that the link scanners after us see none (baseStriker),
once the relative ``href`` and ``src`` values it set are written whole (resolved
against the first base readers read, when that is an http(s) URL of an allowed scheme,
into a URL of an allowed scheme: a ``javascript:`` or ``data:`` base resolves nothing),
so links keep their targets and scanners see them whole; and ``id``, which in a
webmail page showing the HTML inline names a property of ``window`` the page's own
script may read (DOM clobbering). ``<a name>`` stays, and an
in-page link (``href="#x"``) reaches it as it would an ``id``.

HTML goes out as it came only when it is already within the allowlist
(:mod:`postwarden_policies.html_precheck` proves it) or nh3 gives it back
unchanged; everything else goes out as nh3 wrote it. ``removed`` reports what
went away, compared before and after (document structure -- html, head, title,
body -- aside): tag names (``("script", 1)``), attributes (``("@onerror", 1)``),
comments (``("comment", 2)``) and style declarations (``("style:url(", 1)``).
The tags before are read as HTML's tokenizer reads them (:data:`.htmltokens.TOKENS`;
in SVG and MathML content as :func:`.foreigncontent.readings` says), so a name in an
attribute value, a comment or a script (``<a title="<script>">``) is no tag that went
away, and what a ``<style>`` in ``<svg>`` holds is tags; those after are as nh3 writes
them, each value quoted and no ``<`` but a tag's. The tree builder alone sees more (a
tag it drops from where it cannot stand), so the count can still miss something;
that is why nothing ever decides on it. A part rewritten with nothing counted was only
re-serialized, or lost something the count missed.

CSS properties outside the allowlist are dropped from a part that is
rewritten but are not counted, and the precheck lets them through: nearly
every newsletter carries some (``mso-*``, ``-webkit-*``, ``position``), and a
property runs and fetches nothing. What can (``url(``, ``expression``,
``behavior``, ``javascript:``, bindings, ``@import``) is counted.

``href`` and ``src`` are judged as a browser's URL parser reads them: tabs and
newlines anywhere are dropped, leading and trailing controls and spaces are
trimmed, and ``\\`` counts as ``/``, so ``h&#9;ttp://`` is a remote image and
``d&#9;ata:`` a ``data:`` URL.

What a ``<noscript>`` holds is cleaned as markup, as mail readers (which run no script)
read it; nh3 parses as a browser running scripts, for which it is text, so the tags go
first (:func:`_without_noscript_tags`). So do SVG and MathML, with all they hold as
readers read it (:func:`_without_foreign_content`): nh3's parser let HTML out of them.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from html import escape as html_escape
from html import unescape as html_unescape
from urllib.parse import urljoin

import nh3

from .colours import background_colour
from .colours import legacy as legacy_colour
from .foreigncontent import (
    document_tags,
    foreign_elements,
    readings,
    tag_attributes,
    tag_name,
)
from .html_allowlist import (
    ATTRIBUTE_VALUES,
    ATTRIBUTES,
    CSS_DANGER,
    CSS_PROPERTIES,
    DROP_WITH_CONTENT,
    IMAGE_URL_ATTRIBUTES,
    NOT_COUNTED,
    TAGS,
    HtmlOptions,
)
from .html_cost import BUDGET, estimated_cost
from .html_precheck import needs_no_sanitizing
from .htmltokens import ATTRIBUTE, FOREIGN, HTML, INTEGRATION, Reading, ascii_lower
from .sanitizer_process import ISOLATE_CHARS, ChildFailed, SanitizerProcesses
from .stylesheets import EMPTY, Declared, StyleSheet, css_unescaped, read_plain_rules

log = logging.getLogger(__name__)


_DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpe?g|webp)[;,]", re.IGNORECASE)
# Each piece of markup, as HTML's tokenizer reads it where it reads as each Reading
# (lower-cased text, so the C-level Counter can count the names as found); group 1
# says whether it is a comment. The groups are alike in each.
_MARKUP: dict[Reading, re.Pattern[str]] = {
    reading: re.compile(r"(?=(<!--)?)" + reading.tokens.pattern, reading.tokens.flags)
    for reading in (HTML, FOREIGN, INTEGRATION)}
_COMMENT, _NAME, _ATTRIBUTES = 0, _MARKUP[HTML].groupindex["name"] - 1, \
    _MARKUP[HTML].groupindex["attributes"] - 1
# A start tag as nh3 writes it (no "<" or ">" in a value or in text but a tag's: stopping
# at a "<" keeps the search linear whatever the text), and an attribute in it (each value
# in double quotes, none holding one).
_WRITTEN_TAG = re.compile(r"<([a-z][a-z0-9]*)([^<>]*)>")
_WRITTEN_ATTRIBUTE = re.compile(r' ([^\s="]+)="')
_WRITTEN_CLASS = re.compile(r' class="([^"]*)"')
_SHEET_ROOM = 65_536  # characters style sheets may add besides the HTML's own length
_WRITTEN_STYLE = re.compile(r' style="([^"]*)"')
_CSS_COMMENT_OR_SPACE = re.compile(r"/\*.*?\*/|\s", re.DOTALL)
_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|\Z)", re.DOTALL)
# A style value's declarations: split at ";" outside strings, comments and unquoted
# url()s (CSS's url token, which runs to its ")" even when bad), as CSS splits them (at
# each ";", "color:red /* ; x:url(y) */; width:1px" lost its width, and
# "url(data:image/png;base64,...)" its image; a danger word holds no ";", so it stays
# within one of them).
_DECLARATIONS = re.compile(
    r"""(?:(?<![\w-])(?i:url)\([ \t\n\r\f]*(?![ \t\n\r\f"'])(?:[^)\\]|\\.)*\)?"""
    r"""|[^;"'/\\]|\\.|"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|/\*.*?(?:\*/|\Z)|/)+""",
    re.DOTALL)
_URL_TRIMMED = "".join(map(chr, range(0x21)))  # C0 controls and space
_URL_DROPPED = str.maketrans("", "", "\t\n\r")
# A style value holding none of these goes through untouched: each counted CSS
# word without the punctuation whitespace could part from it ("@ import",
# "javascript :"), plus CSS escapes and comments, which could hide any of them.
_STYLE_MARKERS = (
    "\\", "/*", *(word.removeprefix("-moz-").lstrip("@").rstrip(":") for word in CSS_DANGER)
)
# HTML holding none of these is cleaned without the attribute filter (see _cleaner);
# "<base": the filter writes the relative URLs of a page with one whole.
_FILTER_MARKERS = ("data:", "<base", *_STYLE_MARKERS)
# A style value holding a character reference: nh3 decodes it before filtering, so
# "&#101;xpression" or "&bsol;" hides a marker above from a search of the raw text.
_STYLE_REFERENCE = re.compile(r"""style\s*=\s*(?:"[^"]*&|'[^']*&|[^\s"'>]*&)""")
_FAILED_NOTICE = "<p>[This HTML content was removed because it could not be sanitized.]</p>"
# The <html> and <body> start tags, and the attributes of each that set how a page is
# shown (colours, direction, language): nh3 cleans a fragment, which has neither.
# bgcolor and text colour the page from the body alone (HTML's presentational hints;
# browsers ignore them on <html>: carried, they coloured a page readers leave white).
_ROOT_TAGS = ("html", "body")
_PAGE_LOOKS = {"html": frozenset({"style", "dir", "lang"}),
               "body": frozenset({"bgcolor", "text", "background", "link", "style", "dir",
                                  "lang"})}
_HREF = frozenset({"href"})
_HAS_BASE = re.compile("<base", re.IGNORECASE)
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):", re.IGNORECASE)
# An http(s) URL whose host every URL parser takes alike: labels of letters, digits and
# hyphens, the last no number (read as IPv4), none punycode (checked); and its port.
# A URL resolved against a base nh3's parser refuses ("http://a b/") went out, and a
# second pass dropped it.
_PLAIN_HTTP = re.compile(
    r"(https?)://(?:(?!xn--)[a-z0-9-]+\.)*(?!xn--)[a-z][a-z0-9-]*\.?(?::([0-9]{1,5}))?"
    r"(?=[/?#]|\Z)", re.IGNORECASE)
# A start tag as nh3 writes it (each value in double quotes, none holding one; a "<" in
# text or a value is written "&lt;") whose style lost every declaration to nh3's CSS
# allowlist (group 1: the tag up to that style).
_EMPTY_STYLE = re.compile(r'(<[a-z][a-z0-9]*(?: [^\s="<>]+="[^"]*")*) style=""')
_AS_CSS = {"bgcolor": "background-color:{}", "text": "color:{}"}
_URL_ATTRIBUTES = frozenset({"href"}) | IMAGE_URL_ATTRIBUTES
_SETS_COLOUR = re.compile(r"(?:^|;)\s*color\s*:", re.IGNORECASE)  # in a written style
# A background image a style sets (_background_image): the property and its value; a
# plain url() in it, its URL quoted without its quote, a backslash or a line break, or
# unquoted without a space, a quote or a bracket (group 1, 2 or 3).
_BACKGROUND_DECLARATION = re.compile(r"\s*(background(?:-image)?)\s*:(.*)",
                                     re.IGNORECASE | re.DOTALL)
_CSS_URL = re.compile(
    r"""(?<![\w-])url\(\s*(?:"([^"\\\n\r\f]*)"|'([^'\\\n\r\f]*)'|([^\s"'()\\]*))\s*\)""",
    re.IGNORECASE)
# An HTML background attribute (any name ending so will do): cleaned with the filter,
# which judges its URL's scheme (nh3 judges those of href and src alone).
_BACKGROUND_ATTRIBUTE = re.compile(r"background[\t\n\f\r /]*=")

# Per-call counters for what the attribute filter dropped (several threads may
# sanitize at once; a ContextVar is private to each).
_dropped: contextvars.ContextVar[Counter[str]] = contextvars.ContextVar("dropped")
# The URL of the <base> tag nh3 drops, which the filter resolves relative URLs against.
_page_base: contextvars.ContextVar[str | None] = contextvars.ContextVar("page_base")


def _filter_threads() -> concurrent.futures.ThreadPoolExecutor:
    """Where nh3 runs with the attribute filter when asked on a thread Python did not
    start. nh3 calls the filter back through PyGILState_Ensure, which resumes the
    thread state Python registered for the OS thread; on a thread a C library
    started that may be another thread's state: libmilter runs a connection's
    callbacks on any of its pooled workers, with the state pymilter made on the
    first, and two threads resuming one state crashed the milter in libpython.
    Threads Python started have their own, and clean where they are. Parts over
    ISOLATE_CHARS go to a child process (:mod:`.sanitizer_process`), never here."""
    return concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="postwarden-nh3")


def _on_foreign_thread() -> bool:
    # threading knows a thread it did not start (libmilter's) only as a dummy.
    return isinstance(threading.current_thread(), threading._DummyThread)


_FILTER_THREADS = _filter_threads()
# Where parts over ISOLATE_CHARS are cleaned, started on first use.
_CHILDREN: SanitizerProcesses[tuple[int, _Sanitized]] | None = None
_CHILDREN_LOCK = threading.Lock()
# When the caller stops waiting for this message (a time.monotonic() value): a part in
# a child is given no longer, and a part after it none. The milter sets it per message;
# without it, each part has the children's time limit.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "sanitize_deadline", default=None)
# What nh3 may spend on all the HTML parts of one message, as html_cost estimates it
# (about 300 ms): a part within its own BUDGET can still cost a tenth of a second, and
# a message can hold hundreds of them. Ordinary newsletters stay far below it (twenty
# parts of 60 KB: a thousandth of it).
MESSAGE_BUDGET = 3 * BUDGET


class _Spent:
    """The estimated cost of the parts of one message sanitized so far."""

    __slots__ = ("cost",)

    def __init__(self) -> None:
        self.cost = 0


_spent: contextvars.ContextVar[_Spent | None] = contextvars.ContextVar(
    "sanitize_spent", default=None)


@contextlib.contextmanager
def message_budget() -> Iterator[None]:
    """Within it, the parts sanitized share MESSAGE_BUDGET: once their estimated costs
    add up to it, the next part that would go past it gets the ``too_complex`` notice
    (without it, each part has only its own BUDGET)."""
    token = _spent.set(_Spent())
    try:
        yield
    finally:
        _spent.reset(token)


def _after_fork() -> None:
    # A forked child has none of the parent's threads, and an executor that had
    # started one would wait on it for ever; the sanitizer children are the parent's.
    global _FILTER_THREADS, _CHILDREN, _CHILDREN_LOCK  # noqa: PLW0603
    _FILTER_THREADS = _filter_threads()
    _CHILDREN_LOCK = threading.Lock()
    _CHILDREN = None


os.register_at_fork(after_in_child=_after_fork)


def _filter_style(value: str, dropped: Counter[str],
                  loadable: Callable[[str], str | None]) -> str | None:
    kept = []
    for declaration in _DECLARATIONS.findall(value):
        read = css_unescaped(declaration)
        folded = _CSS_COMMENT_OR_SPACE.sub("", read).lower()
        danger = next((word for word in CSS_DANGER if word in folded), None)
        if danger is None:
            kept.append(declaration.strip())
            continue
        if danger == "url(" and (image := _background_image(declaration, loadable)):
            kept.append(image)
            continue
        dropped[f"style:{danger}"] += 1
        if (colour := _background_colour(read)) is not None:
            kept.append(f"background-color:{colour}")
    result = "; ".join(d for d in kept if d)
    return result or None


def _background_image(declaration: str, loadable: Callable[[str], str | None]) -> str | None:
    """``declaration`` (a style's, as written) as kept when it is a ``background`` or
    ``background-image`` whose url()s are plain and each an image URL ``loadable`` lets
    readers load (giving it as to write it), with nothing else that fetches or runs:
    a newsletter's hero image. Anything else (an escape, a comment, a url() in any other
    property: cursor, list-style, border-image...) goes as before."""
    found = _BACKGROUND_DECLARATION.fullmatch(declaration)
    if found is None or "\\" in declaration or "/*" in declaration:
        return None
    name, value = found.groups()
    pieces: list[str] = []
    start = 0
    for url in _CSS_URL.finditer(value):
        written = loadable(next(group for group in url.groups() if group is not None))
        if written is None:
            return None
        pieces += [value[start : url.start()], ' url("{}") '.format(written.replace('"', "%22"))]
        start = url.end()
    rest = "".join(pieces[::2]) + value[start:]
    if any(quote in rest for quote in "\"'") or not inert_css(rest.lower()):
        return None
    return f"{name.lower()}:{''.join(pieces)}{value[start:]}".strip()


def _background_colour(declaration: str) -> str | None:
    """The colour a ``background`` shorthand (escapes read) that goes for its image sets,
    as :func:`.colours.background_colour` writes it: gone with it, white text the
    template set on ``background:#000 url(hero.jpg)`` showed white on white."""
    name, colon, value = _CSS_COMMENT.sub(" ", declaration).lower().partition(":")
    if not colon or name.strip() != "background":
        return None
    return background_colour(value)


def _as_url_parser_reads(value: str) -> str:
    """``value`` lower-cased, as a browser's URL parser reads it before the scheme:
    tabs and newlines gone wherever they are, C0 controls and spaces trimmed at
    both ends, and backslashes as slashes (which they are in http(s) URLs)."""
    return _as_written(value).lower()


def _as_written(value: str) -> str:
    """:func:`_as_url_parser_reads`, its case kept (a path's matters)."""
    return value.strip(_URL_TRIMMED).translate(_URL_DROPPED).replace("\\", "/")


def _resolved(base: str, value: str, schemes: frozenset[str]) -> str:
    """``value`` (an href or src nh3 let through: relative, or in an allowed scheme)
    resolved against ``base`` as a reader would have; as it is when it was absolute or
    an in-page link, or when the result is in no allowed scheme."""
    url = _as_written(value)
    if not url or url.startswith("#") or _SCHEME.match(url):
        return value
    try:
        joined = urljoin(base, url)
    except ValueError:  # "//a[/": a bracket that opens no IPv6 address
        return value
    return joined if _plain_http(joined) in schemes else value


def _plain_http(url: str) -> str | None:
    """The scheme of ``url``, an http(s) URL of a plain host (see _PLAIN_HTTP); else None."""
    plain = _PLAIN_HTTP.match(url)
    if plain is None or int(plain.group(2) or 0) > 65535:
        return None
    return plain.group(1).lower()


def _base_url(html: str, schemes: frozenset[str]) -> str | None:
    """The URL the first ``<base href>`` readers read in ``html`` sets, when it is an
    http(s) URL of a plain host and an allowed scheme (a ``javascript:`` or ``data:``
    base resolves nothing); else None."""
    for name, tag in document_tags(html):
        if name != "base":
            continue
        href = tag_attributes(tag, _HREF).get("href")
        if href is None:
            continue  # readers take the first base with an href
        url = _as_written(href.replace("\0", "\ufffd"))  # a NUL byte as the parser reads it
        return url if _plain_http(url) in schemes else None
    return None


def _counter() -> Counter[str]:
    dropped = _dropped.get(None)
    return Counter() if dropped is None else dropped  # None: called outside sanitize_html


def _make_filter(strip_remote: bool, schemes: frozenset[str],
                 ) -> Callable[[str, str, str], str | None]:
    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        # Called for every kept attribute: leave the common cases quickly.
        if attribute == "style":
            folded = value.lower()
            if not any(marker in folded for marker in _STYLE_MARKERS):
                return value
            dropped = _counter()
            kept = _filter_style(value, dropped, loadable)
            if kept is None:
                dropped["@style"] -= 1  # already counted by its declarations
            return kept
        if attribute not in _URL_ATTRIBUTES:
            return value
        value, url = _url_read(value, schemes)
        reason = _refusal(url, attribute in IMAGE_URL_ATTRIBUTES, strip_remote)
        if reason is not None:
            dropped = _counter()
            dropped[reason] += 1
            dropped[f"@{attribute}"] -= 1  # counted once, by the reason
            return None
        # nh3 judges the schemes of href and src alone (a refused one counts as @background).
        return value if attribute != "background" or _scheme_allowed(url, schemes) else None

    def loadable(written: str) -> str | None:
        """A CSS url()'s URL as to write it, if readers may load it as an image."""
        written, url = _url_read(written, schemes)
        if _refusal(url, True, strip_remote) is None and _scheme_allowed(url, schemes):
            return written
        return None

    return attribute_filter


def _url_read(value: str, schemes: frozenset[str]) -> tuple[str, str]:
    """An href, src or url() value as to write it (resolved against the dropped
    ``<base>``: :func:`_resolved`), and as :func:`_as_url_parser_reads` reads that."""
    base = _page_base.get(None)
    written = value if base is None else _resolved(base, value, schemes)
    return written, _as_url_parser_reads(written)


def _refusal(url: str, image: bool, strip_remote: bool) -> str | None:
    """Why readers must not load ``url`` (as :func:`_as_url_parser_reads` reads it), as
    counted: a ``data:`` URL but a raster image's (``url:data``), an image served over
    http(s) under ``remote_images: strip`` (``remote-image``); None if they may."""
    if url.startswith("data:") and not (image and _DATA_IMAGE.match(url)):
        return "url:data"
    if strip_remote and image and url.startswith(("http:", "https:", "//")):
        return "remote-image"
    return None


def _scheme_allowed(url: str, schemes: frozenset[str]) -> bool:
    """Whether ``url`` (as :func:`_as_url_parser_reads` reads it) is relative or in an
    allowed scheme (``data:`` is judged by :func:`_refusal`)."""
    scheme = _SCHEME.match(url)
    return scheme is None or scheme.group(1) in schemes | {"data"}


@functools.lru_cache(maxsize=64)
def _cleaner(remote_images: str, schemes: frozenset[str], filtered: bool = True) -> nh3.Cleaner:
    """One Cleaner per option combination, built on first use and shared.

    The attribute filter is a Python call per attribute; HTML that holds none
    of the constructs it looks for is cleaned by the same allowlist without it.
    """
    return nh3.Cleaner(
        tags=set(TAGS),
        clean_content_tags=set(DROP_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
        tag_attribute_values={tag: {name: set(values) for name, values in allowed.items()}
                              for tag, allowed in ATTRIBUTE_VALUES.items()},
        attribute_filter=_make_filter(remote_images == "strip", schemes) if filtered else None,
        # Without the filter data: is simply not an allowed scheme.
        url_schemes=set(schemes) | {"data"} if filtered else set(schemes) - {"data"},
        filter_style_properties=set(CSS_PROPERTIES),
        link_rel=None,  # as in HTML within the allowlist, delivered as it came
        strip_comments=True,
    )


def _needs_filter(folded: str, options: HtmlOptions) -> bool:
    # "<im": the HTML tree builder reads an <image> start tag as <img>.
    if options.remote_images == "strip" and "<im" in folded:
        return True
    if any(marker in folded for marker in _FILTER_MARKERS):
        return True
    if "background" in folded and _BACKGROUND_ATTRIBUTE.search(folded):
        return True
    return "&" in folded and _STYLE_REFERENCE.search(folded) is not None


def _read(folded: str) -> tuple[Counter[str], Counter[str]]:
    """The tags (comments too) and the attributes in ``folded`` (lower-cased HTML), read
    as readers read them, in SVG and MathML content too (:func:`.foreigncontent.readings`:
    ``<svg><style><img onerror>`` is an image with a handler, no style sheet)."""
    pieces = [piece for start, end, reading in readings(folded)
              for piece in _MARKUP[reading].findall(folded, start, end)]
    tags = Counter(piece[_NAME] for piece in pieces if piece[_NAME])
    tags["comment"] = sum(1 for piece in pieces if piece[_COMMENT])
    written = " ".join(piece[_ATTRIBUTES] for piece in pieces if piece[_ATTRIBUTES])
    return tags, Counter(name for name, _ in ATTRIBUTE.findall(written))


def _written(folded: str) -> tuple[Counter[str], Counter[str]]:
    """:func:`_read` for HTML as nh3 writes it (lower-cased), in a simpler pass."""
    tags = _WRITTEN_TAG.findall(folded)
    written = "".join(attributes for _, attributes in tags)
    return Counter(name for name, _ in tags), Counter(_WRITTEN_ATTRIBUTE.findall(written))


def _removed(before: str, after: str, dropped: Counter[str]) -> tuple[tuple[str, int], ...]:
    """What went away; ``before`` and ``after`` (nh3's output) are lower-cased."""
    tags, attributes = _read(before)
    kept_tags, kept_attributes = _written(after)
    lost = tags - kept_tags  # keeps only positive differences
    lost.update({"@" + name: n for name, n in (attributes - kept_attributes).items()})
    for name in NOT_COUNTED:
        lost.pop(name, None)
    lost.update(dropped)
    return tuple(sorted((+lost).items()))


def _is_panic(exc: BaseException) -> bool:
    # pyo3's PanicException derives from BaseException and cannot be imported.
    return type(exc).__name__ == "PanicException"


def removed_whole(reason: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    """A notice in place of HTML that cannot be judged, and the reason counted."""
    return _FAILED_NOTICE, ((reason, 1),)


def sanitize_html(html: str, options: HtmlOptions) -> tuple[str, tuple[tuple[str, int], ...]]:
    """(clean HTML, what was removed), whatever the input. The exceptions, both for the
    caller to defer the message (the part is not at fault):
    :class:`~.sanitizer_process.SanitizerBusy`, when no child process came free in time,
    and :class:`~.sanitizer_process.SanitizerCodeChanged`, when a child refused to run
    because the package on disk is no longer this process's code.

    With nothing removed the caller leaves the part as it was, so HTML already
    within the allowlist (:mod:`postwarden_policies.html_precheck`) comes back
    as it is, without nh3.
    """
    if needs_no_sanitizing(html, options):
        return html, ()
    return _clean(html, options)


def _clean(html: str, options: HtmlOptions) -> tuple[str, tuple[tuple[str, int], ...]]:
    spent = _spent.get()
    left = BUDGET if spent is None else min(BUDGET, MESSAGE_BUDGET - spent.cost)
    request = (html, options.remote_images, options.allowed_url_schemes, left)
    deadline = DEADLINE.get()
    cost: int
    done: _Sanitized
    if deadline is not None and time.monotonic() >= deadline:
        cost, done = 0, "too_slow"  # the message's time is up: its parts are not worth starting
    elif len(html) <= ISOLATE_CHARS:
        cost, done = sanitized_part(*request, clean=_clean_here)
    else:
        cost, done = _sanitized_in_child(request)
    if done == "too_costly":
        log.warning("%s; replaced with a notice", _TOO_COSTLY if left == BUDGET else
                    "this HTML part would take the message's parts past the sanitizer's "
                    "time for one message")
        return removed_whole("too_complex")
    if spent is not None:
        spent.cost += cost
    if isinstance(done, str):
        removed, level, message = _FAILURES[done]
        log.log(level, "%s; replaced with a notice", message)
        return removed_whole(removed)
    return done


_TOO_COSTLY = ("an HTML part would hold the sanitizer too long (nested too deep, formatting "
               "reopened too often, or a tag with too many attributes)")
# Why nh3 gave no HTML back -> (removed reason, log level, what the log says).
_FAILURES = {
    "not_unicode": ("unsanitizable", logging.WARNING,
                    "an HTML part holds text that is not valid Unicode"),
    "panic": ("unsanitizable", logging.ERROR, "nh3 panicked on an HTML part"),
    "child_failed": ("unsanitizable", logging.ERROR,
                     "the sanitizer's child process failed on an HTML part"),
    "too_slow": ("too_complex", logging.WARNING,
                 "an HTML part was not sanitized within its time (the sanitizer's limit, or "
                 "what the message had left)"),
}
_Cleaned = tuple[str, Counter[str]] | str  # the clean HTML and what the filter dropped, or why not
# The clean HTML and what went away, or why not (a key of _FAILURES, or "too_costly").
_Sanitized = tuple[str, tuple[tuple[str, int], ...]] | str


def _clean_here(html: str, remote_images: str, schemes: frozenset[str],
                filtered: bool) -> _Cleaned:
    if filtered and _on_foreign_thread():
        return _FILTER_THREADS.submit(clean_with_nh3, html, remote_images, schemes,
                                      filtered).result()
    return clean_with_nh3(html, remote_images, schemes, filtered)


def clean_with_nh3(html: str, remote_images: str, schemes: frozenset[str],
                     filtered: bool) -> _Cleaned:
    """nh3 on ``html`` in this thread: the work of :mod:`.sanitizer_process`'s children,
    and of this process for smaller parts."""
    cleaner = _cleaner(remote_images, schemes, filtered)
    try:
        if not filtered:  # nh3 calls no Python back: any thread will do
            return cleaner.clean(html), Counter()
        return _filtered_clean(cleaner, html, schemes)
    except UnicodeEncodeError:  # lone surrogates: nh3 takes only text that is valid UTF-8
        return "not_unicode"
    except BaseException as exc:
        if not _is_panic(exc):
            raise
        return "panic"


def sanitized_part(html: str, remote_images: str, schemes: frozenset[str], left: int,
                   clean: Callable[[str, str, frozenset[str], bool], _Cleaned] = clean_with_nh3,
                   ) -> tuple[int, _Sanitized]:
    """The part's estimated cost and, unless that is past ``left`` ("too_costly"), what
    ``clean`` gives with what went away: the work of a sanitizer child on a part over
    ISOLATE_CHARS (the estimate too, a pass over every tag that takes seconds of CPU on
    megabytes: in the milter it would hold the GIL), of this process on a smaller one."""
    folded = html.lower()
    cost = estimated_cost(folded, left)
    if cost > left:  # nh3 cannot be stopped once it runs
        return cost, "too_costly"
    markup = _without_noscript_tags(html) if "<noscript" in folded else html
    if "<svg" in folded or "<math" in folded:
        markup = _without_foreign_content(markup)
    done = clean(markup, remote_images, schemes,
                 _needs_filter(folded, HtmlOptions(remote_images, schemes)))
    if isinstance(done, str):
        return cost, done
    cleaned, dropped = done
    sheet = read_plain_rules(html, CSS_PROPERTIES) if "<style" in folded else EMPTY
    looks = _root_looks(html, folded)
    restyled = _with_sheet_styles(sheet, cleaned) if sheet is not EMPTY else cleaned
    if "link" in looks["body"]:
        restyled = _with_link_colour(restyled, looks["body"]["link"], dropped)
    if restyled != cleaned:  # cleaned again: its new styles as any
        done = clean(restyled, remote_images, schemes, True)
        if isinstance(done, str):
            return cost, done
        cleaned = done[0]
        dropped.update(done[1])
    wrapper = _page_wrapper(looks, dropped,
                            lambda div: clean(div, remote_images, schemes, True), sheet)
    if wrapper is not None:
        cleaned = f"{wrapper}{cleaned}</div>"
    removed = _removed(folded, cleaned.lower(), dropped)  # an emptied style is no removal
    return cost, (_EMPTY_STYLE.sub(r"\1", cleaned) if ' style=""' in cleaned else cleaned,
                  removed)


def _with_sheet_styles(sheet: StyleSheet, cleaned: str) -> str:
    """``cleaned`` (nh3's output) with what the plain rules of the ``<style>`` sheets of
    its HTML (``sheet``: :func:`.stylesheets.read_plain_rules`) declare for each element
    written into its style attribute, before what that holds (an ``!important`` one
    after: :func:`_sheet_declarations`). nh3 drops the sheets whole: a reader could
    apply them to its own page. Without them Outlook's mail
    (``p.MsoNormal{margin:0;font-family:Calibri}``) showed in Times, each of its lines a
    paragraph apart. A value that could break out of its declaration
    or fetch something is left out. So is all of it where it would more than double the
    HTML (a long ``*{...}`` rule over 100,000 tags made gigabytes)."""
    room = len(cleaned) + _SHEET_ROOM

    def restyled(tag: re.Match[str]) -> str:
        nonlocal room
        name, attributes = tag.groups()
        if room < 0 or not sheet.may_style(name, attributes):
            return tag.group()
        classes = _WRITTEN_CLASS.search(attributes)
        before, after = _sheet_declarations(
            sheet.declared(name, html_unescape(classes.group(1)) if classes else "", ""))
        if not before and not after:
            return tag.group()
        kept, own = _own_style(attributes)
        style = "; ".join([*before, *([own] if own is not None else []), *after])
        written = f'<{name}{kept} style="{html_escape(style)}">'
        room -= len(written) - len(tag.group())
        return written

    done = _WRITTEN_TAG.sub(restyled, cleaned)
    return cleaned if room < 0 else done


def _own_style(attributes: str) -> tuple[str, str | None]:
    """A written tag's ``attributes`` (nh3's: each value in double quotes) without its
    style, and that style's text (None: it has none)."""
    own = _WRITTEN_STYLE.search(attributes)
    if own is None:
        return attributes, None
    return _WRITTEN_STYLE.sub("", attributes), html_unescape(own.group(1))


def _sheet_declarations(declared: Declared) -> tuple[list[str], list[str]]:
    """What a sheet ``declared`` for an element, as written in a style attribute: to go
    before its own, and the ``!important`` ones after; a value :func:`inert_css`
    refuses left out."""
    before = [f"{prop}:{value}" for prop, ((important, _, _), value) in declared.items()
              if not important and inert_css(value)]
    after = [f"{prop}:{value} !important" for prop, ((important, _, _), value)
             in declared.items() if important and inert_css(value)]
    return before, after


def inert_css(value: str) -> bool:
    """Whether a declaration's value (escapes read) stays one value and fetches nothing."""
    folded = _CSS_COMMENT_OR_SPACE.sub("", value)
    return not any(mark in value for mark in ";{}\\") and "/*" not in value and \
        not any(word in folded for word in CSS_DANGER)


def _with_link_colour(cleaned: str, value: str, dropped: Counter[str]) -> str:
    """``cleaned`` (nh3's output) with the colour of the body's ``link`` attribute
    (``value``, read as :func:`colours.legacy` reads it) first in the style of each link
    (``<a href>``) whose style sets none, as readers colour unvisited links by it below
    any CSS; ``vlink`` and ``alink`` (visited, pressed) no inline style can set. Gone
    with the body tag, links showed in the reader's blue on the sender's dark page."""
    colour = legacy_colour(value)
    dropped["@link"] -= 1  # the body's attribute goes, its colour on the links
    if colour is None:
        return cleaned

    def coloured(tag: re.Match[str]) -> str:
        name, attributes = tag.groups()
        if name != "a" or ' href="' not in attributes:
            return tag.group()
        kept, own = _own_style(attributes)
        if own is not None and _SETS_COLOUR.search(own):
            return tag.group()
        style = f"color:{colour};{own or ''}"
        return f'<a{kept} style="{html_escape(style)}">'

    return _WRITTEN_TAG.sub(coloured, cleaned)


def _page_wrapper(looks: dict[str, dict[str, str]], dropped: Counter[str],
                  clean: Callable[[str], _Cleaned], sheet: StyleSheet = EMPTY) -> str | None:
    """A ``<div>`` start tag with what the ``<html>`` and ``<body>`` tags (``looks``:
    :func:`_root_looks`) set for the page, cleaned as any tag: ``dir`` and ``lang``, and
    as its style the body's ``bgcolor`` and ``text`` and both tags' styles; or None. nh3
    drops both tags with their attributes: text written white for a black ``bgcolor``
    was then white on white, and a Hebrew or Arabic page laid out left to right
    (punctuation at the wrong end). A colour attribute goes as the ``#rrggbb`` readers
    make of any value by HTML's legacy rules (:func:`colours.legacy`), never as
    written, which as CSS could be more ("red;display:none" hid the page); one that
    paints nothing ("transparent") goes with nothing lost. Neither is counted in ``dropped``. A
    tag's style comes after its colour attributes, which it overrides in readers. What
    ``sheet``'s rules for ``html`` and ``body`` declare comes first (an ``!important`` one
    last): ``body{font-family:Arial;color:#333}`` went with the sheet. The body's
    ``background`` image goes as a ``background-image``, which the filter keeps as it
    would the same image on a table (:func:`_background_image`)."""
    attributes: dict[str, str] = {}
    declarations, important = _sheet_declarations(
        {**sheet.declared("html", "", ""), **sheet.declared("body", "", "")})
    for name in _ROOT_TAGS:
        styles = []
        for look, value in looks[name].items():
            if look == "link":
                continue  # on the links: _with_link_colour
            if look == "style":
                styles.append(value)
                continue
            if look in ("dir", "lang"):
                attributes[look] = value  # the body's over the document's
            elif look == "background":  # judged by the filter as any background-image
                declarations.append('background-image:url("{}")'.format(
                    _as_written(value).replace('"', "%22")))
            elif (colour := legacy_colour(value)) is not None:
                declarations.append(_AS_CSS[look].format(colour))
            dropped[f"@{look}"] -= 1
        declarations += styles
    if declarations or important:
        attributes["style"] = "; ".join(declarations + important)
    if not attributes:
        return None
    written = "".join(f' {name}="{html_escape(value)}"' for name, value in attributes.items())
    done = clean(f"<div{written}></div>")
    if isinstance(done, str):
        return None
    dropped.update(done[1])  # what its style lost
    wrapper = done[0].removesuffix("</div>")
    return wrapper if wrapper.startswith("<div ") else None


def _tags(html: str) -> Iterator[tuple[str, re.Match[str]]]:
    """The tags of ``html`` as HTML's tokenizer reads them: the name, A to Z lower-cased,
    "/" before an end tag's; and the match (:data:`.htmltokens.TOKENS`'s groups). Not the text
    "<body" in a comment, a ``<title>`` or ``<script>``, or an attribute value (a decoy
    there set the page's colours); and a quote opens a value only after "=" (``<p
    a"b>``: one taken anywhere hid a ``<body>`` readers read, or showed one they do not).
    SVG and MathML content is read as readers read it (:func:`.foreigncontent.readings`):
    a tag in a ``<style>`` there is one, one in a CDATA section none."""
    for start, end, reading in readings(html):
        for found in reading.tokens.finditer(html, start, end):
            if (name := tag_name(found)) is not None:
                yield name, found


def _without_noscript_tags(html: str) -> str:
    """``html`` with an empty comment for each of its ``<noscript>`` and ``</noscript>``
    tags. nh3 parses as a browser running scripts, which reads what they hold as text:
    their markup went out as text readers showed (a tracking pixel's ``<img ...>``).
    Mail readers run no script and read it as markup, as nh3 does without the tags. A
    comment, which nh3 drops, keeps apart what was on either side: joined, the text
    ``<<noscript>img src=...>`` made an image readers never showed."""
    pieces: list[str] = []
    start = 0
    for name, found in _tags(html):
        if name in ("noscript", "/noscript"):
            pieces.append(html[start : found.start()])
            start = found.end()
    pieces.append(html[start:])
    return "<!---->".join(pieces)


def _without_foreign_content(html: str) -> str:
    """``html`` with an empty comment for each ``<svg>`` and ``<math>`` element, all it holds
    with it, as readers' tree builder reads them (:func:`.foreigncontent.foreign_elements`).
    nh3 drops them so, but its parser (html5ever) lets HTML out of them where readers keep
    it in: it closes a ``<span>`` around the ``<svg>`` at a ``</span>`` in a ``<desc>``, or
    the ``<p>`` around the ``<math>`` at a ``<p>`` in an ``<annotation-xml>``, which readers
    ignore, and what came after in the ``<desc>`` or annotation, which readers do not
    show, went out shown. The ``<base>`` tags readers read in them stay (in a
    ``<foreignObject>``: :func:`_base_url` reads the first)."""
    bases = [found for name, found in document_tags(html) if name == "base"] \
        if _HAS_BASE.search(html) else []
    pieces: list[str] = []
    start = kept = 0
    for begin, end in foreign_elements(html):
        pieces.append(html[start:begin])
        pieces.append("<!---->")
        while kept < len(bases) and bases[kept].start() < end:
            if bases[kept].start() > begin:  # not one before the element
                pieces.append(bases[kept].group())
            kept += 1
        start = end
    pieces.append(html[start:])
    return "".join(pieces)


def _root_looks(html: str, folded: str) -> dict[str, dict[str, str]]:
    """What the ``<html>`` and ``<body>`` start tags of ``html`` (``folded``: lower-cased)
    set for the page (:data:`_PAGE_LOOKS`), by name. As readers' tree builder merges them
    into the one element, a later tag adds the attributes earlier ones lacked, the
    first of a name counts; one inside a ``<template>`` they ignore
    (:func:`.foreigncontent.document_tags`). Each tag is read once, up to
    the last "<html" or "<body" text, so 100,000 body tags cost a pass. The tags are
    matched in ``html``, or in ``folded`` where str.lower() moved what follows (a
    "\u0130" before it grew)."""
    looks: dict[str, dict[str, str]] = {name: {} for name in _ROOT_TAGS}
    last = max(folded.rfind("<html"), folded.rfind("<body"))
    if last < 0:  # most parts: no scan
        return looks
    for name, found in document_tags(html if len(html) == len(folded) else folded):
        if found.start() > last:
            break
        if name in looks:
            for attribute, value in tag_attributes(found, _PAGE_LOOKS[name]).items():
                # A to Z alone (str.lower() made "blac\u212a" black, a name).
                looks[name].setdefault(
                    attribute, value if attribute == "background" else ascii_lower(value))
    return looks


def _sanitized_in_child(request: tuple[str, str, frozenset[str], int]) -> tuple[int, _Sanitized]:
    """What :func:`sanitized_part` gives in a child; a part the child gave no answer for
    is charged all it had left (``request[3]``): its cost is unknown, and it took time."""
    global _CHILDREN  # noqa: PLW0603
    with _CHILDREN_LOCK:
        if _CHILDREN is None:
            _CHILDREN = SanitizerProcesses(f"{__name__}:sanitized_part")
            atexit.register(_CHILDREN.close)
        children = _CHILDREN
    try:
        done: tuple[int, _Sanitized] | None = children.run(request, DEADLINE.get())
    except ChildFailed as exc:  # maybe the part's doing: retried, it would kill the next
        # child, and the next. SanitizerBusy and SanitizerCodeChanged are not: they go up.
        log.error("%s", exc)
        return request[3], "child_failed"
    return (request[3], "too_slow") if done is None else done


def _filtered_clean(cleaner: nh3.Cleaner, html: str, schemes: frozenset[str],
                    ) -> tuple[str, Counter[str]]:
    """The clean HTML, and what the attribute filter dropped."""
    dropped: Counter[str] = Counter()
    token = _dropped.set(dropped)
    base = _page_base.set(_base_url(html, schemes) if _HAS_BASE.search(html) else None)
    try:
        return cleaner.clean(html), dropped
    finally:
        _page_base.reset(base)
        _dropped.reset(token)
