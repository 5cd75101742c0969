"""How an element's inline CSS and attributes make its content show, for
:func:`~postwarden_policies.visiblehtml.render_visible`.

An inline style is read as the cascade leaves it (the last declaration of a
name wins, unless an earlier one is ``!important``); ``<style>`` sheets are
not read. What hides an element's content: ``display: none`` (or the
``hidden`` attribute, ``<template>``), ``visibility: hidden``, a font under
2 px (``font-size: 0``, ``font: 0/0 a``), ``opacity`` of at most 0.1, a
transparent colour, a zero height or width with ``overflow: hidden``, and
Outlook's ``mso-hide: all``.
"""

from __future__ import annotations

import html
import re
from typing import NamedTuple

from .htmltokens import ATTRIBUTE
from .sanitize import css_unescaped

# Attributes look_of reads; a tag without any of them shows as its parent does.
_LOOKED_AT = re.compile(r"style|hidden|dir|alt|value", re.IGNORECASE)
_VISIBILITY = ("hidden", "collapse", "visible")
_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|\Z)", re.DOTALL)
_NUMBER_TEXT = r"[+-]?(?:\d+\.?\d*|\.\d+)"
_NUMBER = re.compile(_NUMBER_TEXT)
_LENGTH = re.compile(rf"({_NUMBER_TEXT})([a-z%]*)")
_FONT_SIZE_IN_FONT = re.compile(  # the size in the font shorthand: before "/" or the family
    rf"(?:^|\s)((?:{_NUMBER_TEXT}[a-z%]+|0+\.?0*)|[a-z-]*(?:small|medium|large|er))"
    r"(?=\s*/|\s+\S)"
)
# A number without a unit is px to quirks mode, in which most mail (no doctype) renders.
_PX = {"": 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "in": 96.0, "cm": 37.8, "mm": 3.78,
       "q": 0.945}
_RELATIVE = {"em": 1.0, "%": 0.01, "ex": 0.5, "ch": 0.5, "rem": 1.0}  # rem: of 16 px
_KEYWORD_PX = {"xx-small": 9.0, "x-small": 10.0, "small": 13.0, "medium": 16.0,
               "large": 18.0, "x-large": 24.0, "xx-large": 32.0, "xxx-large": 48.0}
UNREADABLE_PX = 2.0  # text smaller than this shows as a speck, if at all
_TRANSPARENT = re.compile(
    r"^transparent$|^#(?:[0-9a-f]{3}0|[0-9a-f]{6}00)$"
    r"|^(?:rgb|hsl)a?\(.*[,/]\s*(?:0+\.?0*|\.0+)%?\s*\)$"
)
_ZERO_BOX = ("height", "max-height", "width", "max-width", "line-height")
_OVERFLOW = ("overflow", "overflow-x", "overflow-y")


def _declarations(style: str) -> dict[str, str]:
    """An inline style's declarations, name to value as the cascade leaves them: the
    last of a name wins, unless an earlier one is ``!important``."""
    found: dict[str, str] = {}
    important: set[str] = set()
    text = _CSS_COMMENT.sub(" ", css_unescaped(html.unescape(style))).lower()
    for declaration in text.split(";"):
        name, _, value = (piece.strip() for piece in declaration.partition(":"))
        is_important = value.endswith("important") and "!" in value
        if is_important:
            value = value[: value.rindex("!")].strip()
        if name and value and (is_important or name not in important):
            found[name] = value
            if is_important:
                important.add(name)
    return found


def font_px(value: str, parent: float) -> float:
    """A font size in px; the parent's for what we cannot read. A computed size
    (calc(), var(), min()...) may be zero, and is taken as zero."""
    if "(" in value:
        return 0.0
    if value in _KEYWORD_PX:
        return _KEYWORD_PX[value]
    if value in ("smaller", "larger"):
        return parent * (0.83 if value == "smaller" else 1.2)
    length = _LENGTH.fullmatch(value)
    if length is None:
        return parent
    amount, unit = float(length.group(1)), length.group(2)
    if unit in _PX:
        return amount * _PX[unit]
    if unit in _RELATIVE:
        return amount * _RELATIVE[unit] * (16.0 if unit == "rem" else parent)
    return 0.0 if amount <= 0 else parent  # viewport units: unknown


def _number_at_most(value: str, limit: float) -> bool:
    number = _NUMBER.match(value)
    if number is None:
        return False
    return float(number.group()) * (0.01 if value.endswith("%") else 1.0) <= limit


class Look(NamedTuple):
    """What a start tag's attributes say about how its content shows; None: inherited
    (or, for ``breaks``, as the element's kind has it)."""

    gone: bool  # no box at all (display: none and the like), for all inside too
    breaks: bool | None  # a block box: a line break before and after
    reverses: bool  # drawn right to left, whatever its characters
    shows: str  # an attribute shown as text: alt text (images off), a value
    font_size: str | None
    visible: bool | None
    painted: bool | None


# The look of a tag without any attribute look_of reads: as its parent shows.
PLAIN = Look(False, None, False, "", None, None, None)


def look_of(name: str, attributes: str) -> Look:
    """How the element ``name`` with these attributes (as written) shows."""
    if name != "template" and not _LOOKED_AT.search(attributes):
        return PLAIN
    values: dict[str, str] = {}
    for attribute in ATTRIBUTE.finditer(attributes):
        # The first of a name counts; the value as written, quotes off.
        values.setdefault(attribute.group(1).lower(), (attribute.group(2) or "").strip("\"'"))
    css = _declarations(values["style"]) if values.get("style") else {}
    display = css.get("display", "")
    overflow = " ".join(css.get(name, "") for name in _OVERFLOW)
    size = css.get("font-size")
    if size is None and "font" in css:
        shorthand = _FONT_SIZE_IN_FONT.search(css["font"])
        size = shorthand.group(1) if shorthand else None
    visibility = css.get("visibility")
    shows = ""
    if name == "img" or (name == "input" and values.get("type", "text").lower()
                         in ("text", "submit", "button", "reset", "search")):
        shows = html.unescape(values.get("alt" if name == "img" else "value", ""))
    return Look(
        gone=(
            display == "none"
            or name == "template"  # inert content
            or ("hidden" in values and not display)  # display: none, which CSS undoes
            or css.get("mso-hide") == "all"  # Outlook
            or _number_at_most(css.get("opacity", "1"), 0.1)
            or (("hidden" in overflow or "clip" in overflow)
                and any(_number_at_most(css.get(name, "1"), 0) for name in _ZERO_BOX))
        ),
        breaks=not display.startswith(("inline", "contents")) if display else None,
        reverses=(values.get("dir", "").lower() == "rtl" and name == "bdo") or (
            css.get("direction") == "rtl" and "override" in css.get("unicode-bidi", "")),
        shows=shows,
        font_size=size,
        visible=visibility == "visible" if visibility in _VISIBILITY else None,
        painted=_TRANSPARENT.search(css["color"]) is None if "color" in css else None,
    )


