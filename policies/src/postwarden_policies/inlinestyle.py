"""How an element's inline CSS and attributes make its content show, for
:func:`~postwarden_policies.visiblehtml.render_visible`.

Its style is read as the cascade leaves it, from its style attribute and the
document's ``<style>`` sheets as far as :mod:`~postwarden_policies.stylesheets`
reads them (simple selectors), and an SVG element's presentation attributes. What
hides an element's content: ``display: none`` (or the ``hidden`` attribute of an
HTML element, ``<template>``), ``visibility: hidden``, a font under 2 px (``font-size: 0``,
``font: 0/0 a``), ``opacity`` of at most 0.1, a transparent colour or the colour of
the background behind it (:mod:`~postwarden_policies.colours`), a zero height or
width with ``overflow: hidden``, Outlook's ``mso-hide: all``, and a place off the
screen: positioned far to the left or top, absolutely positioned and clipped to
nothing, a ``text-indent`` far to the left, a ``clip-path`` that leaves nothing.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .colours import UNKNOWN, Colour, background, colour, legacy
from .htmltokens import ATTRIBUTE, WS, ascii_lower, attribute_unescape
from .stylesheets import EMPTY, INLINE, Declared, StyleSheet, cascade, cleaned, declarations

# Attributes look_of reads; a tag without any of them (nor a sheet's rule for it)
# shows as its parent does. Searched for in the attributes lower-cased, several times
# faster than with re.IGNORECASE: a name that lower-cases to one of them is found all
# the same.
_LOOKED_AT = re.compile("style|hidden|dir|alt|value|color|background")
# SVG's presentation attributes that hide text (display="none", visibility="hidden",
# opacity="0", font-size="0", fill="none") and MathML's (mathsize="0",
# mathcolor="transparent"), by namespace, each to the CSS property it declares below
# any rule of a sheet.
_SVG_PAINT = ("fill", "fill-opacity", "stroke")  # what paints SVG's text, not its colour
_PRESENTATION = {
    "svg": {name: name for name in ("display", "visibility", "opacity", "font-size",
                                    "width", "height", *_SVG_PAINT)},
    "math": {"mathsize": "font-size", "mathcolor": "color",
             "mathbackground": "background-color"},
}
_PRESENTATION_AT = {namespace: re.compile("|".join(attributes))
                    for namespace, attributes in _PRESENTATION.items()}
# SVG elements whose overflow is hidden (readers' style sheet): one of a width or
# height under UNREADABLE_PX shows nothing legible of what it holds.
_CLIPPED = frozenset({"svg", "foreignobject"})
_VISIBILITY = ("hidden", "collapse", "visible")
# Possessive: "\d+\.?\d*" could split a run of digits every way, and a long run that
# fails after it (a unit that is no unit) took time quadratic in its length.
_NUMBER_TEXT = r"[+-]?(?:\d++(?:\.\d*+)?|\.\d++)"
_ZERO = r"0++(?:\.0*+)?"  # a zero written without a unit
_NUMBER = re.compile(_NUMBER_TEXT)
_LENGTH = re.compile(rf"({_NUMBER_TEXT})([a-z%]*)")
_FONT_SIZE_IN_FONT = re.compile(  # the size in the font shorthand: before "/" or the family
    rf"(?:^|\s)((?:{_NUMBER_TEXT}[a-z%]+|{_ZERO})|[a-z-]*(?:small|medium|large|er))"
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
    rf"|^(?:rgb|hsl)a?\(.*[,/]\s*+(?:{_ZERO}|\.0++)%?\s*+\)$"
)
_ZERO_BOX = ("height", "max-height", "width", "max-width", "line-height")
_OVERFLOW = ("overflow", "overflow-x", "overflow-y")
_BACKGROUND = ("background-color", "background", "background-image")
# The elements readers paint a bgcolor (or a background image) attribute on: on a
# <div> or a <span> it paints nothing, so text there in that colour shows.
_PAINTED_BY_ATTRIBUTE = frozenset("body table thead tbody tfoot tr td th marquee".split())
_FAR = -1000.0  # px: a place further left or up than this is off the screen
_SIDES = ("left", "top")
_MOVED = ("absolute", "fixed", "relative", "sticky")  # the positions left and top move
_CLIP = re.compile(r"rect\(([^()]*)\)")
_CLIP_EDGES = re.compile(r"[\s,]+")
_EMPTY_CLIP_PATH = re.compile(  # inset by half or more, or a circle or ellipse of size 0
    r"inset\((?:\s*(?:[5-9]\d|\d{3,})(?:\.\d*)?%){1,4}\s*\)"
    rf"|(?:circle|ellipse)\(\s*+{_ZERO}(?:px|%)?[\s)]"
)
# The properties look_of reads: what a sheet keeps.
# What paints text otherwise than in its colour (a shadow, an outline, a fill, a
# filter, a blend): text that sets one is not taken for text in its background's
# colour, whatever both are.
_REPAINTED = ("text-shadow", "-webkit-text-fill-color", "-webkit-text-stroke", "filter",
              "mix-blend-mode")
_NOT_REPAINTED = frozenset({"none", "normal", "currentcolor", "initial", "inherit", "unset"})
PROPERTIES = frozenset(
    ("display", "visibility", "font-size", "font", "opacity", "color", "mso-hide",
     "direction", "unicode-bidi", "position", "text-indent", "clip", "clip-path",
     *_ZERO_BOX, *_OVERFLOW, *_BACKGROUND, *_SIDES, *_REPAINTED, *_SVG_PAINT)
)


def _declarations(values: dict[str, str], name: str, sheet: StyleSheet, namespace: str
                  ) -> dict[str, str]:
    """An element's declarations, name to value as the cascade leaves them, from the
    sheet and its style attribute (``values``: its attributes), and an SVG or MathML
    element's presentation attributes."""
    presented = _presented(values, _PRESENTATION[namespace]) if namespace else {}
    if sheet is EMPTY and not values.get("style") and not presented:
        return {}  # most tags: nothing declared
    found: Declared = {}
    if sheet is not EMPTY:
        found = sheet.declared(name, attribute_unescape(values.get("class", "")),
                               attribute_unescape(values.get("id", "")))
    for property_name, entry in presented.items():  # any rule of a sheet wins
        found.setdefault(property_name, entry)
    if values.get("style"):
        style = cleaned(attribute_unescape(values["style"]))
        cascade(found, declarations(style, PROPERTIES), INLINE, 0)
    return {property_name: value for property_name, (_, value) in found.items()}


def _presented(values: dict[str, str], attributes: dict[str, str]) -> Declared:
    """The declarations of the presentation ``attributes`` (attribute to property)
    among ``values``: a value holding a ";" or "!important" is none."""
    found: Declared = {}
    for attribute, property_name in attributes.items():
        value = attribute_unescape(values.get(attribute, ""))
        if value and ";" not in value:
            declared = declarations(cleaned(f"{property_name}:{value}"), PROPERTIES)
            cascade(found, (entry for entry in declared if not entry[2]), 0, 0)
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


def _too_small(css: dict[str, str]) -> bool:
    """Whether a box of these sizes, its overflow hidden, shows no text legibly: a width
    or height under UNREADABLE_PX (without a unit: px)."""
    if not any(word in css["overflow"] for word in ("hidden", "clip")):
        return False
    for side in ("width", "height"):
        length = _LENGTH.fullmatch(css.get(side, ""))
        if length is not None and length.group(2) in _PX and \
                0 <= float(length.group(1)) * _PX[length.group(2)] < UNREADABLE_PX:
            return True
    return False


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
    colour: Colour | None
    backdrop: Colour | None  # the background it paints (UNKNOWN: an image)


# The look of a tag without any attribute look_of reads: as its parent shows.
PLAIN = Look(False, None, False, "", None, None, None, None, None)
# Elements readers give a colour of their own (a link, <mark>, form controls): their
# text is not in the colour around it, so never taken for text in its background's
# colour, unless CSS or an attribute sets theirs. OWN_COLOUR: such a tag's plain look.
_OWN_COLOUR = frozenset({"mark", "button", "input", "select", "option", "textarea"})
OWN_COLOUR = PLAIN._replace(colour=UNKNOWN)
_HREF = re.compile(rf"(?:^|[{WS}/])href(?![^{WS}/>=])")  # the attribute, in lower case


def look_of(name: str, attributes: str, sheet: StyleSheet = EMPTY, namespace: str = ""
            ) -> Look:
    """How the element ``name`` with these attributes (as written) shows, given the
    document's style sheets; ``namespace``: "svg" or "math" for an SVG or MathML
    element, whose presentation attributes are CSS, "" for HTML."""
    lowered = attributes.lower()
    own_colour = name in _OWN_COLOUR or (name == "a" and _HREF.search(lowered) is not None)
    inert = name == "template" and not namespace  # an SVG or MathML one is no template
    if (not inert and not _LOOKED_AT.search(lowered)
            and not (namespace and _PRESENTATION_AT[namespace].search(lowered))
            and not sheet.may_style(name, lowered)):
        return OWN_COLOUR if own_colour else PLAIN
    values: dict[str, str] = {}
    for attribute, value in ATTRIBUTE.findall(attributes):
        # The first of a name counts; the value as written, quotes off.
        values.setdefault(ascii_lower(attribute), value.strip("\"'"))
    css = _declarations(values, name, sheet, namespace)
    clipped = bool(css) and namespace == "svg" and name in _CLIPPED
    if clipped:
        css.setdefault("overflow", "hidden")
    display = css.get("display", "")
    size = css.get("font-size")
    if size is None and "font" in css:
        shorthand = _FONT_SIZE_IN_FONT.search(css["font"])
        size = shorthand.group(1) if shorthand else None
    visibility = css.get("visibility")
    shows = ""
    if name == "img" or (name == "input" and ascii_lower(values.get("type", "text"))
                         in ("text", "submit", "button", "reset", "search")):
        shows = attribute_unescape(values.get("alt" if name == "img" else "value", ""))
    return Look(
        gone=(
            inert  # a template's content
            # display: none, which CSS undoes; on HTML elements alone (readers' style sheet)
            or ("hidden" in values and not display and not namespace)
            or (bool(css) and _hidden_by(css, display))  # most tags have no CSS
            or (clipped and _too_small(css))
        ),
        breaks=not display.startswith(("inline", "contents")) if display else None,
        reverses=(ascii_lower(values.get("dir", "")) == "rtl" and name == "bdo") or (
            css.get("direction") == "rtl" and "override" in css.get("unicode-bidi", "")),
        shows=shows,
        font_size=size,
        visible=visibility == "visible" if visibility in _VISIBILITY else None,
        painted=_svg_painted(css) if namespace == "svg" else _painted(css.get("color")),
        colour=_colour(css, values, name) or (UNKNOWN if own_colour else None),
        backdrop=_backdrop(css, values, name),
    )


def _hidden_by(css: dict[str, str], display: str) -> bool:
    """Whether CSS hides the element and all it holds."""
    overflow = " ".join(css.get(name, "") for name in _OVERFLOW)
    return (
        display == "none"
        or css.get("mso-hide") == "all"  # Outlook
        or _number_at_most(css.get("opacity", "1"), 0.1)
        or (("hidden" in overflow or "clip" in overflow)
            and any(_number_at_most(css.get(name, "1"), 0) for name in _ZERO_BOX))
        or _off_screen(css)
    )


def _painted(colour_value: str | None) -> bool | None:
    """Whether text in this colour is painted (None: not set, as its parent's)."""
    return None if colour_value is None else _TRANSPARENT.search(colour_value) is None


def _svg_painted(css: dict[str, str]) -> bool | None:
    """Whether an SVG element paints its text (None: as its parent does): by its fill
    (none, transparent or of an opacity of at most 0.1 paints nothing; currentColor is
    its colour), or a stroke outlining it."""
    if css.get("stroke", "none") not in ("none", "transparent"):
        return True
    fill = css.get("fill")
    if fill == "none" or _number_at_most(css.get("fill-opacity", "1"), 0.1):
        return False
    return _painted(css.get("color") if fill == "currentcolor" else fill)


def _colour(css: dict[str, str], values: dict[str, str], name: str) -> Colour | None:
    """The text colour an element sets: CSS, or a <font>'s color attribute; UNKNOWN
    where CSS paints its text otherwise too."""
    if any(css.get(other, "none") not in _NOT_REPAINTED for other in _REPAINTED):
        return UNKNOWN
    if "color" in css:
        return colour(css["color"])
    return _attribute_colour(values.get("color")) if name == "font" else None


def _backdrop(css: dict[str, str], values: dict[str, str], name: str) -> Colour | None:
    """The background colour an element paints: CSS, or its bgcolor attribute; UNKNOWN
    under an image (CSS's, or the background attribute's), which covers the colour."""
    painted = name in _PAINTED_BY_ATTRIBUTE
    if css.get("background-image", "none") != "none" or (painted and values.get("background")):
        return UNKNOWN
    if "background-color" in css and not _TRANSPARENT.search(css["background-color"]):
        return colour(css["background-color"])
    if "background" in css and not _TRANSPARENT.search(css["background"]):
        return background(css["background"])
    return _attribute_colour(values.get("bgcolor")) if painted else None


def _attribute_colour(value: str | None) -> Colour | None:
    """A color or bgcolor attribute's colour, by HTML's legacy rules, as readers read
    any value: "#fff fff fff" is white and "fff" #0f0f0f, near black."""
    found = legacy(attribute_unescape(value)) if value is not None else None
    return colour(found) if found is not None else None


def _off_screen(css: dict[str, str]) -> bool:
    """Whether CSS puts the element where no reader sees it. Lengths are read with a
    font of 16 px: only far-off places count, so an em more or less does not matter."""
    position = css.get("position")
    if position in _MOVED and any(font_px(css.get(side, "0"), 16.0) < _FAR for side in _SIDES):
        return True
    if position in ("absolute", "fixed") and _clipped_to_nothing(css.get("clip", "")):
        return True
    return (font_px(css.get("text-indent", "0"), 16.0) < _FAR
            or _EMPTY_CLIP_PATH.match(css.get("clip-path", "")) is not None)


def _clipped_to_nothing(clip: str) -> bool:
    """Whether ``clip: rect(top right bottom left)`` leaves no area."""
    rect = _CLIP.match(clip)
    edges = _CLIP_EDGES.split(rect.group(1).strip()) if rect else []
    if len(edges) != 4 or "auto" in edges:
        return False
    top, right, bottom, left = (font_px(edge, 16.0) for edge in edges)
    return bottom <= top or right <= left


