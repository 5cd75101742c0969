"""Recognise HTML that is already within the sanitizer's allowlist, without nh3.

nh3 parses and re-serializes every part it is given (milliseconds for a 60 KB
newsletter), and a part from which it removes nothing is then left as it was.
:func:`needs_no_sanitizing` answers that question first, with one regular
expression over the whole part, for HTML that is plainly inside the allowlist.
RE2 matches it (a DFA: linear, and four times faster than sre on a 60 KB
newsletter), so the grammar has no lookaround and no possessive quantifier.

It is an allowlist proof, never a search for bad things: the whole part must
match a strict grammar, and anything outside it goes to nh3 as before.

- Every ``<`` starts a start tag of an allowed name, an end tag of one, or
  ``<!doctype``. A comment, ``<![CDATA[``, ``<?`` or a ``<`` before anything
  else gives no proof.
- A start tag carries only the attributes allowed on it, separated by HTML
  whitespace. No value holds ``<``, ``>`` or NUL, so no raw-text or RCDATA end
  (``</title>``) can hide inside one, and the HTML tokenizer reads the same
  tags and attributes as this grammar.
- ``href``, ``src`` and ``background`` values are quoted and spelled out with an allowed
  scheme: ``http(s)://`` and a plain ASCII host name, a non-hierarchical
  scheme such as ``mailto:`` or ``cid:`` followed by a letter or digit (no
  ``//`` authority, no reference to a newline the URL parser would strip
  before one), or ``#``. No URL holds whitespace. A character reference
  cannot change a scheme and a host written out before it. ``data:`` always
  goes to nh3, which judges it; with ``remote_images: strip``, so does every
  image (``src``, ``background``) served over http(s).
- ``style`` values are quoted printable ASCII without ``&``, ``\\`` or ``/``
  (no references, escapes or comments) and without ``=``. With spaces removed
  they hold none of the CSS words the sanitizer counts. They are found after
  whitespace: there ``style=`` can only be the attribute, since no URL holds
  whitespace and no other value holds ``=`` (a URL ending in ``style=`` once
  hid the real value from this check).
- The document structure that nh3 drops uncounted (``html``, ``head``,
  ``title``, ``body``) is accepted without attributes.
- An attribute kept only with certain values (a link's ``target``, as
  ``_blank``: see :data:`~.html_allowlist.ATTRIBUTE_VALUES`) is accepted
  quoted, with one of them; nh3 adds no ``rel`` to links either way.

Names match ASCII case-insensitively, as the tokenizer lower-cases them: the
grammar reads the lower-cased part, and a part holding one of the two
characters outside ASCII that lower-case to an ASCII letter (U+0130, U+212A
KELVIN SIGN) gets no proof. What nh3 may still change in accepted HTML is
harmless by construction: the tree builder drops a misplaced allowed tag (a
``<td>`` outside a table) or the second of two equal attributes, and the
sanitizer drops ``<title>`` with its content (raw text, even when the title
is never closed: a reader shows none of it as markup either).
tests/policies/test_html_precheck.py checks this against nh3 on generated
documents.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

import re2

from .html_allowlist import (
    ATTRIBUTE_VALUES,
    ATTRIBUTES,
    CSS_DANGER,
    IMAGE_URL_ATTRIBUTES,
    NOT_COUNTED,
    TAGS,
    HtmlOptions,
)
from .patterns import re2_options

_WS = r"[ \t\n\f\r]"
_URL_CHAR = r"[!#-&(-;=?-\[\]-~]"  # printable ASCII but quotes, "<", ">" and "\\"
# No "=" in a plain or style value and no whitespace in a URL: " style=" can then
# appear in a tag only as the attribute itself (see needs_no_sanitizing).
_VALUE = r"""(?:"[^"<>=\x00]*"|'[^'<>=\x00]*'|[a-z0-9#%.,_-]+)"""
_STYLE_CHAR = r"[\t\n\r !#-%(-.0-;?-\[\]-~]"  # the same, without "&", "/" or "="
_STYLE_VALUE = f"""(?:"{_STYLE_CHAR}*"|'{_STYLE_CHAR}*')"""


def _label(first_but_x: str) -> str:
    """A host label that is not an A-label ("xn--...", which would need a punycode
    check), spelled out since RE2 has no lookahead: any first character but
    "x" (``first_but_x``), or "x" not followed by "n-" and a second "-"."""
    rest = "[a-z0-9-]*"
    not_dash = f"[a-z0-9]{rest}"
    return f"(?:{first_but_x}{rest}|x(?:n(?:-(?:{not_dash})?|{not_dash})?|[a-mo-z0-9-]{rest})?)"


_HOST = rf"(?:{_label('[a-wyz0-9-]')}\.)*{_label('[a-wyz]')}(?::[0-9]{{1,4}})?"
# Schemes with hosts or special parsing are never taken on trust here.
_SPECIAL = frozenset(
    {"http", "https", "ftp", "ws", "wss", "file", "data", "javascript", "vbscript"}
)
_URL_ATTRIBUTES = frozenset({"href", "src", "background"})
# After whitespace (see needs_no_sanitizing), and quoted values stop at "<". The
# literal comes first and the whitespace is looked behind: sre then finds
# candidates with a fast literal search (several times faster on a newsletter).
_STYLE_ATTRIBUTE = re.compile(
    rf"style(?<={_WS}style){_WS}*+={_WS}*+(\"[^\"<>]*+\"|'[^'<>]*+')"
)
# The only characters outside ASCII whose lower case holds an ASCII letter.
_FOLDS_TO_ASCII = ("\u0130", "\u212a")


def trie(words: Iterable[str], spell: Callable[[str], str] = re.escape) -> str:
    """A regex for exactly these names, as a prefix tree (a smaller pattern to compile,
    and one sre tries faster than a flat alternation); ``spell`` writes one character.

    No lookahead marks the end of a name: whatever the grammar accepts after a
    name (whitespace, "/", ">", "=") is what ends a name for the HTML tokenizer.
    """
    tree: dict[str, Any] = {}
    for word in words:
        node = tree
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [
            "" if key == "" else spell(key) + emit(child) for key, child in sorted(node.items())
        ]
        return branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"

    return emit(tree)


def _url(schemes: frozenset[str]) -> str:
    forms = [f"#{_URL_CHAR}*"]
    web = schemes & {"http", "https"}
    if web:
        forms.append(rf"(?:{'|'.join(sorted(web))})://{_HOST}(?:[/?#]{_URL_CHAR}*)?")
    opaque = sorted(s for s in schemes - _SPECIAL if re.fullmatch(r"[a-z][a-z0-9+.-]*", s))
    if opaque:
        # A letter or digit first: no "//" authority, no reference the URL
        # parser would turn into a stripped newline before one.
        forms.append(rf"(?:{'|'.join(map(re.escape, opaque))}):[a-z0-9]{_URL_CHAR}*")
    url = "|".join(forms)
    return f"""(?:"(?:{url})"|'(?:{url})')"""


def _attributes(tag: str, options: HtmlOptions) -> str:
    """Zero or more allowed attributes of ``tag``, each after HTML whitespace."""
    schemes = frozenset(s.lower() for s in options.allowed_url_schemes)
    names = ATTRIBUTES["*"] | ATTRIBUTES.get(tag, frozenset())
    if names & IMAGE_URL_ATTRIBUTES and options.remote_images == "strip":
        schemes -= {"http", "https"}  # no tag has both a link and an image URL
    equals = f"{_WS}*={_WS}*"
    forms = [
        f"{trie(names - _URL_ATTRIBUTES - {'style'})}(?:{equals}{_VALUE})?",
        f"{trie({'style'})}{equals}{_STYLE_VALUE}",
    ]
    for name, values in ATTRIBUTE_VALUES.get(tag, {}).items():
        value = trie(values)  # read lower-cased, as nh3 compares them
        forms.append(f"""{trie({name})}{equals}(?:"{value}"|'{value}')""")
    if names & _URL_ATTRIBUTES:
        forms.append(f"{trie(names & _URL_ATTRIBUTES)}{equals}{_url(schemes)}")
    return f"(?:{_WS}+(?:{'|'.join(forms)}))*"


@functools.lru_cache(maxsize=16)
def _grammar(options: HtmlOptions) -> Any:
    """The grammar for these options, compiled by RE2 (a few milliseconds, cached)."""
    structure = NOT_COUNTED - TAGS  # html, head, title, body: no attributes
    by_attributes: dict[str, list[str]] = {"": sorted(structure)}
    for tag in sorted(TAGS):
        by_attributes.setdefault(_attributes(tag, options), []).append(tag)
    starts = [trie(tags) + attributes for attributes, tags in by_attributes.items()]
    start = f"(?:{'|'.join(starts)}){_WS}*/?>"
    end = f"/{trie(TAGS | structure)}{_WS}*>"
    doctype = r"!doctype(?:[ \t\n\f\r][^<>\x00]*)?>"
    text = r"[^<\x00]*"
    grammar = rf"{text}(?:<(?:{end}|{start}|{doctype}){text})*"
    # RE2 builds its DFA lazily within the patterns' memory cap (8 MiB); the
    # bench's 60 KB newsletter needs 2 MiB (with 1 MiB RE2 falls back to its
    # NFA, twenty times slower).
    engine = re2_options()
    # One character per byte: the part is matched as UTF-8, where every byte of a
    # character outside ASCII is >= 0x80, so each such byte is accepted exactly
    # where the grammar accepts any character outside ASCII (only in text and in
    # quoted plain values).
    engine.encoding = re2.Options.Encoding.LATIN1
    return re2.compile(grammar.encode("ascii"), engine)


def needs_no_sanitizing(html: str, options: HtmlOptions) -> bool:
    """True only if ``html`` is provably inside the allowlist (see the module text)."""
    if any(char in html for char in _FOLDS_TO_ASCII):
        return False
    folded = html.lower()
    if _grammar(options).fullmatch(folded.encode("utf-8", "surrogatepass")) is None:
        return False
    # Every style value, and perhaps some look-alikes from text (which cannot
    # reach past a "<"). Inside a tag, whitespace + "style=" is the attribute
    # itself: no URL holds whitespace, no other value holds "=". (Without the
    # whitespace, a URL ending in "style=" would hide the real value.)
    styles = "".join("".join(_STYLE_ATTRIBUTE.findall(folded)).split())
    return not any(word in styles for word in CSS_DANGER)
