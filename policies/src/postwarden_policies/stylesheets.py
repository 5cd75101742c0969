"""The ``<style>`` sheets of HTML as far as body rules read them, for
:func:`~postwarden_policies.inlinestyle.look_of`.

A selector is read by its subject (the compound after the last combinator) as far
as a simple selector goes: a tag name or ``*``, ``.class``, ``#id``, ``tag.class``,
``tag#id``; what follows (``p .h``'s ``p``, ``.h:not(.x)``'s ``:not(.x)``, ``.h.k``'s
``.k``, ``[...]``) only narrows what it applies to, so it is taken to apply wider:
text hidden "too much" leaves only the second rendering, and the first keeps it. Such a
rule ranks below every other (and its ``!important`` is not read), so it never shows
what a rule read as written or a style attribute hides. One
with a pseudo-element (``.h::before``) or none of those (``[class=h]``) is not read.
The rules inside ``@media`` (unless for print or speech only), ``@supports``,
``@layer``, ``@container`` and ``@document`` are read as if their conditions held (a
sender hid text with ``@media all``); other at-rules' are not. Class
and id names are matched ignoring case, as quirks mode (most mail has no
doctype) does. The cascade is CSS's: ``!important`` first, then the style
attribute, then the more specific selector, then the later rule. The sheets are
those readers take, found as HTML's tokenizer and tree builder find them
(:func:`~.foreigncontent.style_sheets`): none in a comment, an attribute value, a
``<textarea>``, ``<title>``, ``<script>`` or other raw text, or a ``<template>``
(found anywhere, such a fake sheet's rules came later and showed text a real one
hid), and an SVG one's text as the tree builder reads it (a MathML ``<style>`` is none).

Reading is linear in the sheets: one scan of their braces; and so is matching,
in the element's attributes: each of its classes and its id is looked up (no
selector is tried against it), and only the properties asked for are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .foreigncontent import style_sheets
from .htmltokens import WS, ascii_lower

# A CSS escape: up to six hex digits and one blank after them, or any one character but
# a line break or a hex digit (a backslash before a line break escapes nothing).
CSS_ESCAPE = re.compile(r"\\(?:([0-9a-f]{1,6})(?:\r\n|[ \t\n\r\f])?|([^\n\r\f0-9a-f]))",
                        re.IGNORECASE)
# How a declaration ranks in the cascade: !important, specificity, rule order.
Rank = tuple[bool, int, int]
# Declarations as the cascade leaves them: a property's rank and value.
Declared = dict[str, tuple[Rank, str]]
INLINE = 1000  # a style attribute's specificity: above any selector's

# A string, or an escaped character: what hides a brace, a ";" or a comment in CSS.
_QUOTED = r"""\\.|"(?:[^"\\\n]|\\.)*+"?|'(?:[^'\\\n]|\\.)*+'?"""
# A comment; or (group 1, kept as it is) a string or an escape, which opens none.
_CSS_COMMENT = re.compile(rf"({_QUOTED})|/\*.*?(?:\*/|\Z)", re.DOTALL)
_CDO_CDC = re.compile("<!--|-->")  # ignored in a sheet: old mail wraps its rules in them
# What structures a sheet: braces, and strings and escapes, which hide theirs.
_STRUCTURE = re.compile(rf"[{{}}]|{_QUOTED}", re.DOTALL)
# A declaration as CSS splits it, escapes read after: a name up to its first ":" and a
# value up to ";". An escape or a string is a character of them, not a separator: read
# first, "\3b" ended a value early and "\2f\2a" opened a comment that hid the rest.
# The ":" and value are optional so that every match ends at a real ";": required, a
# name of escaped ";"s and no ":" made each search start again inside it (quadratic).
_DECLARATION = re.compile(
    rf"(?:^|;)([^;:\\]*+(?:\\.[^;:\\]*+)*+)(?::((?:[^;\\\"']++|{_QUOTED})*+))?", re.DOTALL
)
# A simple selector as read here: a tag (or *), then a class or an id.
_SELECTOR = re.compile(r"([a-z][^\s.#:\[\]>+~*]*|\*)?(?:([.#])([^\s.#:\[\]>+~*()]+))?")
_SPECIFICITY = {"": 0, ".": 10, "#": 100}
WIDER = -1  # the specificity of a selector read wider than written: below any other
# At-rules that group style rules, read as if their conditions held.
_GROUPS = frozenset({"@media", "@supports", "@layer", "@container", "@document",
                     "@-moz-document"})
_AT_KEYWORD = re.compile(r"@[-a-z0-9_]+")
# Media types of a query for elsewhere than a screen ("print", "only speech"); a query
# with another, none, or "not print" may hold.
_OFF_SCREEN = frozenset({"print", "speech", "aural", "braille", "embossed", "tty", "tv",
                         "projection", "handheld"})
# What ends a compound selector (a combinator) and what starts a pseudo-element.
_COMBINATOR = re.compile(r"[\s>+~]+")
_PSEUDO_ELEMENT = re.compile(r"::|:(?:before|after|first-line|first-letter)\b")
# Attributes a class or id rule needs, searched for in the attributes lower-cased (as
# inlinestyle's _LOOKED_AT, several times faster than with re.IGNORECASE).
_NAMED = re.compile("class|id")


def read_escape(match: re.Match[str]) -> str:
    """A CSS escape as the browser reads it (``e\\78pression`` is ``expression``)."""
    if match.group(1) is None:
        return match.group(2)
    code = int(match.group(1), 16)
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


def css_unescaped(text: str) -> str:
    """CSS text with its escapes read as the browser reads them."""
    return CSS_ESCAPE.sub(read_escape, text) if "\\" in text else text


def declarations(block: str, properties: frozenset[str]) -> Iterator[tuple[str, str, bool]]:
    """A declaration block's declarations (without comments) of these properties: name
    and value unescaped and lower-cased, and whether ``!important``."""
    for written_name, written_value in _DECLARATION.findall(block):
        name = ascii_lower(css_unescaped(written_name).strip(WS))
        if not written_value or name not in properties:  # no ":", or nothing after it
            continue
        value = ascii_lower(css_unescaped(written_value).strip())
        important = value.endswith("important") and "!" in value
        if important:
            value = value[: value.rindex("!")].strip()
        if value:
            yield name, value, important


def cascade(
    into: Declared, declared: Iterable[tuple[str, str, bool]], specificity: int, order: int
) -> None:
    """Add a block's declarations to ``into`` where they win the cascade."""
    for name, value, important in declared:
        rank = (important, specificity, order)
        if name not in into or rank >= into[name][0]:
            into[name] = (rank, value)


def cleaned(css: str) -> str:
    """CSS text without its comments, escapes left for :func:`declarations` to read."""
    return _CSS_COMMENT.sub(_uncommented, css) if "/*" in css else css


def _uncommented(match: re.Match[str]) -> str:
    return match.group(1) or " "


class StyleSheet:
    """The declarations of a document's sheets, by the selector (``span``, ``.h``,
    ``span#x``...) that applies them."""

    __slots__ = ("_names", "_rules")

    def __init__(self, rules: dict[str, Declared]) -> None:
        self._rules = rules
        self._names = frozenset(key for key in rules if key[:1] not in ".#")

    def may_style(self, name: str, lowered: str) -> bool:
        """Whether a rule may apply to a ``name`` element with these attributes (as
        written, lower-cased: a name that lower-cases to class or id is found too)."""
        return bool(self._rules) and (
            name in self._names or "*" in self._names or _NAMED.search(lowered) is not None
        )

    def declared(self, name: str, classes: str, element_id: str) -> Declared:
        """What the sheets declare for an element (as the cascade leaves it), given
        its name and its class and id attributes (references decoded)."""
        keys = [name, "*"]
        for word in dict.fromkeys(ascii_lower(classes).split()):
            keys += (f".{word}", f"{name}.{word}")
        if element_id:
            keys += (f"#{ascii_lower(element_id)}", f"{name}#{ascii_lower(element_id)}")
        found: Declared = {}
        for key in keys:
            for property_name, entry in self._rules.get(key, {}).items():
                if property_name not in found or entry[0] >= found[property_name][0]:
                    found[property_name] = entry
        return found


EMPTY = StyleSheet({})


def read_style_sheets(html: str, properties: frozenset[str]) -> StyleSheet:
    """The sheets of the HTML ``html``, keeping the ``properties`` asked for."""
    sheets = style_sheets(html)
    if not sheets:
        return EMPTY
    rules: dict[str, Declared] = {}
    for order, (prelude, block) in enumerate(_all_rules(sheets)):
        kept = list(declarations(block, properties))
        if kept:
            for key, specificity in _selectors(prelude):
                # Read wider than written, it decides only what no other rule does: a
                # ".h{display:none}" stays, whatever "p .h:hover{display:inline}" says.
                declared = kept if specificity != WIDER else [(n, v, False) for n, v, _ in kept]
                cascade(rules.setdefault(key, {}), declared, specificity, order)
    return StyleSheet(rules)


def read_plain_rules(html: str, properties: frozenset[str]) -> StyleSheet:
    """The rules of the sheets of ``html`` that apply on any screen as written: outside
    every at-rule (not an ``@media`` for phones), each selector a tag, a class or both,
    the ``properties`` asked for: what :mod:`.sanitize` writes into the style attributes
    of the elements they style, where no other rule could tell it otherwise."""
    sheets = style_sheets(html)
    rules: dict[str, Declared] = {}
    for order, (prelude, block) in enumerate(_all_rules(sheets, grouped=False)):
        kept = list(declarations(block, properties))
        for key, specificity in _selectors(prelude) if kept else ():
            if specificity != WIDER and "#" not in key:  # no id is written out
                cascade(rules.setdefault(key, {}), kept, specificity, order)
    return StyleSheet(rules) if rules else EMPTY


def _all_rules(sheets: list[str], grouped: bool = True) -> Iterator[tuple[str, str]]:
    """The rules of the sheets in order, each sheet read on its own as browsers read it:
    a comment, string, rule or ``@media`` left open ends with its sheet (read as one
    text, an unclosed ``.a{color:red`` took the next sheet's rules into its block).
    Those in at-rules only where ``grouped``."""
    for sheet in sheets:
        # Escapes are read in each name, value and selector, where they cannot add a
        # brace or a separator; then lower-cased ("\4e" is "N").
        yield from _rules(_CDO_CDC.sub(" ", cleaned(sheet)), grouped)


def _rules(sheet: str, grouped: bool = True) -> Iterator[tuple[str, str]]:
    """A sheet's rules (without comments), prelude and block, those inside the at-rules
    :func:`_holds` takes to apply too where ``grouped``; other at-rules and what they
    hold left out."""
    groups, depth, start, prelude = 0, 0, 0, ""  # open groups; braces open inside a rule
    for match in _STRUCTURE.finditer(sheet):
        char = match.group()
        if char == "{":
            if depth == 0:
                prelude = _after_statements(sheet[start : match.start()])
                start = match.end()
                if grouped and _holds(prelude):
                    groups += 1
                    continue
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                if not prelude.lstrip().startswith("@"):
                    yield prelude, sheet[start : match.start()]
                start = match.end()
        elif char == "}" and groups:
            groups -= 1
            start = match.end()
    # An unclosed rule ends with the sheet, as CSS ends it.
    if depth == 1 and not prelude.lstrip().startswith("@"):
        yield prelude, sheet[start:]


def _holds(prelude: str) -> bool:
    """Whether an at-rule groups style rules that may apply on a screen."""
    text = ascii_lower(css_unescaped(prelude).strip(WS))
    at_rule = _AT_KEYWORD.match(text)
    if at_rule is None or at_rule.group() not in _GROUPS:
        return False
    return at_rule.group() != "@media" or any(
        _on_screen(query) for query in text[at_rule.end() :].split(","))


def _on_screen(query: str) -> bool:
    words = query.split()
    if words[:1] == ["only"]:
        words = words[1:]
    return not words or words[0] not in _OFF_SCREEN


def _after_statements(text: str) -> str:
    """What follows the statements before a rule (``@import ...;``, ``@charset ...;``):
    a ";" ends an at-rule's statement only. Elsewhere it is part of the selector, which
    it spoils (browsers drop the rule): cut there, ``x;b{...}`` hid every ``<b>``."""
    while text.lstrip(WS).startswith("@") and ";" in text:
        text = text.partition(";")[2]
    return text


def _selectors(prelude: str) -> Iterable[tuple[str, int]]:
    """The subjects of a selector list as far as simple selectors go (see the module
    text), as keys of StyleSheet's rules, and their specificity; others left out."""
    for written in prelude.split(","):
        selector = ascii_lower(css_unescaped(written).strip(WS))
        subject = _COMBINATOR.split(selector)[-1]
        simple = _SELECTOR.match(subject)
        if not simple or not simple.end() or _PSEUDO_ELEMENT.search(subject):
            continue
        tag, kind, word = simple.group(1) or "", simple.group(2) or "", simple.group(3) or ""
        key = (tag if tag != "*" or not kind else "") + kind + word
        if subject != selector or simple.end() < len(subject):
            yield key, WIDER
        else:
            yield key, _SPECIFICITY[kind] + (1 if tag and tag != "*" else 0)
