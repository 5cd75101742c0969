"""Whether signed HTML the sanitizer would change may go out as it came (``signed_mail: skip``).

Outlook signs HTML full of what the sanitizer drops and no reader is harmed by: its
``<o:p>`` paragraph marks, ``<meta>`` tags naming the charset and the program, the
Office namespaces on ``<html>``, the page's language and link colours on ``<body>``,
its style sheet and style attributes of fonts and margins (a quoted font name has the
sanitizer write a tag anew; Word's bullets and Chinese and Japanese font names are CSS
escapes), the id Word gives a picture (a signature's logo), the conditional comment
holding its shape defaults and the empty markers around its bullets. Held for them,
nearly all signed Outlook mail was held.

The sanitizer's ``removed`` counts are no ground for this: they are reported, never
decided on, as they can miss what the tree builder drops (see
:mod:`postwarden_policies.sanitize`). So the sanitizer itself is asked: the HTML with
only the constructs listed here taken out (each a whole token as HTML's tokenizer reads
it, or a tag's listed attributes) must be HTML it leaves as it
is. Everything it would change is then one of them. The list is of what is harmless,
each in the strict form Outlook writes (a ``<meta http-equiv=refresh>``, a sheet with a
``url()`` or a ``position``, a conditional comment holding an image are not on it), never
of what is dangerous. A token taken out joins the text on either side: that can make
markup the original did not have (``<<o:p>img ...>``), which the sanitizer then changes,
so the HTML is held; it can unmake none, but for text ending in ``<``, which would open
a tag over what followed, and so is held too.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator

from .foreigncontent import tag_name
from .html_allowlist import TAGS, HtmlOptions
from .htmltokens import ATTRIBUTE, TOKENS, ascii_lower, attribute_value
from .sanitize import inert_css, sanitize_html
from .stylesheets import CSS_ESCAPE, read_escape

__all__ = ["only_harmless_changes"]

# What a sheet and the <body> style may set: how text looks and where it sits (Chinese
# and Japanese Word's justification too), Word's page setup and its own mso-* properties.
# Not what hides, moves or overlays (display, position, visibility, width...), nor any image.
_PROPERTIES = frozenset(
    """color background-color font font-family font-size font-style font-weight font-variant
    text-align text-justify text-justify-trim text-decoration text-indent text-transform
    letter-spacing word-spacing line-height vertical-align margin margin-top margin-right
    margin-bottom margin-left padding padding-top padding-right padding-bottom padding-left
    word-wrap tab-interval panose-1 page size page-break-before page-break-after
    page-break-inside""".split())
# Where a declaration's escapes are read before it is judged: Word's mso-* (its bullet is
# mso-level-text:\F0B7) and font-family, where Chinese and Japanese Outlook write a font's
# name escaped (SimSun is \5B8B\4F53, Microsoft YaHei "\5FAE\8F6F\96C5\9ED1").
_ESCAPED_PROPERTY = re.compile(r"mso-.*|font-family", re.DOTALL)
_BODY_ATTRIBUTES = frozenset({"lang", "link", "vlink", "style"})
# The id Word gives a picture (a signature's logo): its shape's name, "Picture 1" in the
# writer's language with the space written as XML writes it (Picture_x0020_1,
# Grafik_x0020_1, 图片_x0020_1), or a VML shape's (_x0000_i1025); each time Outlook on the
# web quoted it, x_ before it (x_Picture_x0020_1: it prefixes a quoted mail's ids and
# classes, x_MsoNormal, which the sanitizer keeps, so none names its own page's). The
# sanitizer drops ids as one can clobber a webmail script's global (id="config" is
# window.config); but no script reads a name with Word's _x0020_ or _x0000_ in it, no
# webmail names its own elements so, and the sheets let through here select no id: such
# an id names nothing anything reads. Any other id, or another attribute with it, is the
# sanitizer's to judge.
_PICTURE_ID = re.compile(r"(?:x_)*(?:[^\W\d_]+_x0020_\d{1,6}|_x0000_i\d{1,6})")
_META_NAMES = frozenset({"generator", "progid", "originator"})
_META_CHARSET = re.compile(r"text/html;\s*charset=([\w.:-]+)", re.IGNORECASE)
# A sheet's selectors: a tag, a class, a tag's class, a link's state; Word's at-rules.
_SELECTOR = re.compile(
    r"@font-face|@page\s+[a-z][\w-]*|@list\s+[a-z][\w:-]*"
    r"|(?=[.\w])(?:[a-z][a-z0-9]*)?(?:\.[a-z][\w-]*)?(?::link|:visited)?", re.IGNORECASE)
_RULE = re.compile(r"\s*([^{}]+)\{([^{}]*)\}")
# A CSS string (no line break in it but an escaped one), an escape, or a comment: a "/*" in a
# string opens none (read as one, a comment from it to a "*/" in a later string hid the
# url() between from the check), nor does an escaped "/" or quote (a\/* is "a/" and "*").
_STRING_OR_COMMENT = re.compile(
    r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|\\.|(/\*.*?\*/)""", re.DOTALL)
_STYLE_END = re.compile(r"</style[\t\n\f\r ]*>", re.IGNORECASE)
# The conditional comment Outlook writes in the head: its shape defaults, numbers alone;
# and the markers around its list bullets and line breaks (supportLists...), which hold
# nothing (what lies between them is judged as any HTML).
_MARKERS = re.compile(
    r'<!--\[if gte mso 9\]><xml>\s*(?:<o:shapedefaults v:ext="edit" spidmax="\d+"\s*/>'
    r'|<o:shapelayout v:ext="edit">\s*<o:idmap v:ext="edit" data="[\d,]+"\s*/>\s*'
    r"</o:shapelayout>)\s*</xml><!\[endif\]-->"
    r"|<!\[(?:if !?[a-z]+|endif)\]>|<!--\[(?:if !?[a-z]+|endif)\]-->", re.IGNORECASE)


def only_harmless_changes(html: str, charset: str, options: HtmlOptions) -> bool:
    """Whether all sanitizing would change in ``html`` (decoded from a part labelled
    ``charset``) is harmless: with those constructs taken out, nothing is left for it
    to change."""
    kept = _without_harmless(html, charset)
    return kept is not None and sanitize_html(kept, options)[0] == kept


def _without_harmless(html: str, charset: str) -> str | None:
    """``html`` with its harmless constructs taken out; None where taking one out would
    join a ``<`` to what followed it."""
    pieces: list[str] = []
    start = 0
    for begin, end, instead in _harmless(html, charset):
        if instead == "" and html[begin - 1 : begin] == "<":
            return None
        pieces += (html[start:begin], instead)
        start = end
    pieces.append(html[start:])
    return "".join(pieces)


def _harmless(html: str, charset: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, what goes in their place) for each harmless token of ``html``."""
    after = 0  # the end of a style element taken out: its end tag is no token of its own
    for found in TOKENS.finditer(html):
        if found.start() >= after and (done := _in_place(found, html, charset)) is not None:
            after = done[0]
            yield found.start(), *done


def _in_place(found: re.Match[str], html: str, charset: str) -> tuple[int, str] | None:
    """Where the harmless construct starting with the token ``found`` ends, and what
    goes in its place; None where it is no harmless one."""
    name = tag_name(found)
    attributes = found.group("attributes") or ""
    if ascii_lower(found.group()) in ("<o:p>", "</o:p>") or (
            name is None and _MARKERS.fullmatch(found.group())) or (
            name == "meta" and _harmless_meta(_attributes(attributes), charset)):
        return found.end(), ""
    if name in ("html", "body") and attributes.strip() and _harmless_root(
            name, _attributes(attributes)):
        return found.end(), f"<{name}>"
    if name == "style" and (end := _harmless_sheet(found, html)) is not None:
        return end, ""
    if name in TAGS and (without := _without_harmless_attributes(name, found)) is not None:
        return found.end(), without
    return None


def _without_harmless_attributes(name: str, tag: re.Match[str]) -> str | None:
    """The start tag ``tag`` of element ``name`` without its harmless attributes: a
    :func:`_plain_style` ``style`` (a quoted font name has the sanitizer write the tag
    anew) and an ``<img>``'s :data:`_PICTURE_ID`; None where it has none, or names an
    attribute twice (readers take the first: too clever to be Outlook's)."""
    attributes = list(ATTRIBUTE.finditer(tag.group("attributes")))
    names = [ascii_lower(found.group(1)) for found in attributes]
    harmless = [found for found, key in zip(attributes, names, strict=True)
                if _harmless_attribute(name, key, attribute_value(found.group(2) or ""))]
    if not harmless or len(set(names)) != len(names):
        return None
    written, offset = tag.group(), tag.start("attributes") - tag.start()
    for found in reversed(harmless):
        written = written[: offset + found.start()] + written[offset + found.end() :]
    return written


def _harmless_attribute(tag: str, name: str, value: str) -> bool:
    if name == "style":
        return _plain_style(value)
    return tag == "img" and name == "id" and _PICTURE_ID.fullmatch(value) is not None


def _attributes(written: str) -> dict[str, str] | None:
    """A tag's attributes by name (A to Z lower-cased), values unescaped; None when a
    name is given twice (readers take the first: too clever to be Outlook's)."""
    read: dict[str, str] = {}
    for name, value in ATTRIBUTE.findall(written):
        if (name := ascii_lower(name)) in read:
            return None
        read[name] = attribute_value(value)
    return read


def _harmless_meta(attributes: dict[str, str] | None, charset: str) -> bool:
    """A ``<meta>`` naming the program (Generator, ProgId, Originator: text), or the
    charset the part's label names too (another could have readers read other markup)."""
    if attributes is None or set(attributes) not in ({"name", "content"},
                                                     {"http-equiv", "content"}):
        return False
    if "name" in attributes:
        return ascii_lower(attributes["name"]) in _META_NAMES
    found = _META_CHARSET.fullmatch(attributes["content"].strip())
    return (ascii_lower(attributes["http-equiv"]) == "content-type" and found is not None
            and _same_codec(found.group(1), charset))


def _same_codec(one: str, other: str) -> bool:
    try:
        return codecs.lookup(one).name == codecs.lookup(other).name
    except LookupError:
        return False


def _harmless_root(name: str, attributes: dict[str, str] | None) -> bool:
    """Office's namespaces on ``<html>`` (names no reader fetches); the language, the
    link colours and a plain style on ``<body>``."""
    if attributes is None:
        return False
    if name == "html":
        return all(key == "xmlns" or key.startswith("xmlns:") for key in attributes)
    return set(attributes) <= _BODY_ATTRIBUTES and _plain_style(attributes.get("style", ""))


def _plain_style(value: str) -> bool:
    """Whether each declaration of ``value`` sets a property of :data:`_PROPERTIES` (or
    Word's mso-*) to a value that stays one and fetches nothing, the escapes of
    :data:`_ESCAPED_PROPERTY` read first."""
    for declaration in filter(str.strip, value.split(";")):
        name, colon, setting = declaration.partition(":")
        name = ascii_lower(name.strip())
        escaped = _ESCAPED_PROPERTY.fullmatch(name) is not None
        read = _unescaped(setting) if escaped else setting
        if not colon or not (name.startswith("mso-") or name in _PROPERTIES) or read is None \
                or not inert_css(read.lower()) or not _strings_closed(read):
            return False
    return True


def _unescaped(setting: str) -> str | None:
    """``setting`` with its CSS escapes read as CSS reads them, so the checks judge what
    a reader reads (``\\75 rl(`` reads ``url(``); None where one reads as a quote, which
    no check could tell from one that opens or ends a string. An escape reads the same in
    a string as outside it (``"\\5B8B\\4F53"`` is ``"宋体"``) but for a backslash at the
    end or before a line break, which reads as nothing in a string and as a backslash
    or U+FFFD outside one: here it stays a backslash, which the checks refuse. Read in
    Word's mso-* (which no browser applies) and font-family alone, where a name that
    reads as nothing but a font's can at worst show the text in another font."""
    read = [read_escape(found) for found in CSS_ESCAPE.finditer(setting)]
    return None if "'" in read or '"' in read else CSS_ESCAPE.sub(read_escape, setting)


def _strings_closed(setting: str) -> bool:
    """Whether each quote in ``setting`` is one of a string closed on its line."""
    unquoted = _STRING_OR_COMMENT.sub("", setting)
    return "'" not in unquoted and '"' not in unquoted


def _harmless_sheet(found: re.Match[str], html: str) -> int | None:
    """Where the ``<style>`` element whose start tag and text ``found`` holds ends,
    when it is a plain sheet: selectors of :data:`_SELECTOR`, each tag one the
    allowlist keeps, declarations :func:`_plain_style` takes; else None."""
    end = _STYLE_END.match(html, found.end())
    if end is None or found.group("attributes").strip():
        return None
    sheet = _STRING_OR_COMMENT.sub(_uncommented, found.group("content")).strip()
    sheet = sheet.removeprefix("<!--").removesuffix("-->")
    position = 0
    for rule in _RULE.finditer(sheet):
        if rule.start() != position or not _plain_selectors(rule.group(1)) \
                or not _plain_style(rule.group(2)):
            return None
        position = rule.end()
    return end.end() if not sheet[position:].strip() else None


def _uncommented(found: re.Match[str]) -> str:
    """A string as it is, nothing for a comment."""
    return "" if found.group(1) else found.group()


def _plain_selectors(selectors: str) -> bool:
    for selector in map(str.strip, selectors.split(",")):
        tag = re.match(r"[a-z][a-z0-9]*", selector, re.IGNORECASE)
        if not _SELECTOR.fullmatch(selector) or (
                tag is not None and ascii_lower(tag.group()) not in TAGS):
            return False
    return True
