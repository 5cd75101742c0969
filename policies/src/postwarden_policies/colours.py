"""CSS colours as readers paint them, for :func:`~postwarden_policies.inlinestyle.look_of`:
text in the colour of what is behind it (or all but: each of red, green and blue
within :data:`NEAR` of it) shows nothing.

Colours are read in every form CSS has for a plain colour: the 148 names,
``#rgb``, ``#rrggbb`` (with or without alpha), ``rgb()``/``rgba()`` and
``hsl()``/``hsla()``; anything else (``currentcolor``, ``var()``...) is not read.
A colour attribute (``bgcolor``, ``text``, ``color``) is read by HTML's own rules
instead, which make a colour of any string: :func:`legacy`.
"""

from __future__ import annotations

import colorsys
import re

from .htmltokens import ascii_lower

Colour = tuple[int, ...]  # red, green and blue, 0 to 255
# A background that cannot be told (an image, a gradient): like no colour at all.
UNKNOWN: Colour = ()
NEAR = 8

_NAMES = (
    "aliceblue f0f8ff antiquewhite faebd7 aqua 00ffff aquamarine 7fffd4 azure f0ffff "
    "beige f5f5dc bisque ffe4c4 black 000000 blanchedalmond ffebcd blue 0000ff blueviolet "
    "8a2be2 brown a52a2a burlywood deb887 cadetblue 5f9ea0 chartreuse 7fff00 chocolate "
    "d2691e coral ff7f50 cornflowerblue 6495ed cornsilk fff8dc crimson dc143c cyan 00ffff "
    "darkblue 00008b darkcyan 008b8b darkgoldenrod b8860b darkgray a9a9a9 darkgrey a9a9a9 "
    "darkgreen 006400 darkkhaki bdb76b darkmagenta 8b008b darkolivegreen 556b2f "
    "darkorange ff8c00 darkorchid 9932cc darkred 8b0000 darksalmon e9967a darkseagreen "
    "8fbc8f darkslateblue 483d8b darkslategray 2f4f4f darkslategrey 2f4f4f darkturquoise "
    "00ced1 darkviolet 9400d3 deeppink ff1493 deepskyblue 00bfff dimgray 696969 dimgrey "
    "696969 dodgerblue 1e90ff firebrick b22222 floralwhite fffaf0 forestgreen 228b22 "
    "fuchsia ff00ff gainsboro dcdcdc ghostwhite f8f8ff gold ffd700 goldenrod daa520 gray "
    "808080 grey 808080 green 008000 greenyellow adff2f honeydew f0fff0 hotpink ff69b4 "
    "indianred cd5c5c indigo 4b0082 ivory fffff0 khaki f0e68c lavender e6e6fa "
    "lavenderblush fff0f5 lawngreen 7cfc00 lemonchiffon fffacd lightblue add8e6 "
    "lightcoral f08080 lightcyan e0ffff lightgoldenrodyellow fafad2 lightgreen 90ee90 "
    "lightgray d3d3d3 lightgrey d3d3d3 lightpink ffb6c1 lightsalmon ffa07a lightseagreen "
    "20b2aa lightskyblue 87cefa lightslategray 778899 lightslategrey 778899 "
    "lightsteelblue b0c4de lightyellow ffffe0 lime 00ff00 limegreen 32cd32 linen faf0e6 "
    "magenta ff00ff maroon 800000 mediumaquamarine 66cdaa mediumblue 0000cd mediumorchid "
    "ba55d3 mediumpurple 9370db mediumseagreen 3cb371 mediumslateblue 7b68ee "
    "mediumspringgreen 00fa9a mediumturquoise 48d1cc mediumvioletred c71585 midnightblue "
    "191970 mintcream f5fffa mistyrose ffe4e1 moccasin ffe4b5 navajowhite ffdead navy "
    "000080 oldlace fdf5e6 olive 808000 olivedrab 6b8e23 orange ffa500 orangered ff4500 "
    "orchid da70d6 palegoldenrod eee8aa palegreen 98fb98 paleturquoise afeeee "
    "palevioletred db7093 papayawhip ffefd5 peachpuff ffdab9 peru cd853f pink ffc0cb plum "
    "dda0dd powderblue b0e0e6 purple 800080 rebeccapurple 663399 red ff0000 rosybrown "
    "bc8f8f royalblue 4169e1 saddlebrown 8b4513 salmon fa8072 sandybrown f4a460 seagreen "
    "2e8b57 seashell fff5ee sienna a0522d silver c0c0c0 skyblue 87ceeb slateblue 6a5acd "
    "slategray 708090 slategrey 708090 snow fffafa springgreen 00ff7f steelblue 4682b4 "
    "tan d2b48c teal 008080 thistle d8bfd8 tomato ff6347 turquoise 40e0d0 violet ee82ee "
    "wheat f5deb3 white ffffff whitesmoke f5f5f5 yellow ffff00 yellowgreen 9acd32 "
).split()
_NAMED = {name: bytes.fromhex(code) for name, code in zip(_NAMES[::2], _NAMES[1::2], strict=True)}
_HEX = re.compile(r"#([0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})")
_FUNCTION = re.compile(r"(rgb|hsl)a?\(([^()]*)\)")
_ARGUMENT = re.compile(r"[\s,/]+")
# In the background shorthand: a colour among its other parts.
_BACKGROUND_PART = re.compile(r"#[0-9a-f]+|(?:rgb|hsl)a?\([^()]*\)|[a-z]+")
_ASCII_WHITESPACE = "\t\n\f\r "
# What background_colour reads: a string (its parens are no function's), a function's
# opening or closing, other text; and then the parts left, a colour function whole.
_CSS_STRING = re.compile(r""""[^"\n]*"?|'[^'\n]*'?""")
_CSS_PIECE = re.compile(r"[a-z0-9-]*\(|\)|[a-z0-9-]+|[^()a-z0-9-]+")
_COLOUR_FUNCTIONS = frozenset({"rgb(", "rgba(", "hsl(", "hsla("})
_SHORTHAND_PART = re.compile(r"(?:rgb|hsl)a?\([^()]*\)|[^\s,/()]+")
# A colour function of numbers alone: written out again, it can be nothing more.
_NUMERIC_FUNCTION = re.compile(r"(?:rgb|hsl)a?\([0-9.%+\-\s,/deg]*\)")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def colour(value: str) -> Colour | None:
    """The colour a CSS value (lower-cased) names, alpha left out; None if not read."""
    value = value.strip()
    if value in _NAMED:
        return tuple(_NAMED[value])
    if (code := _HEX.fullmatch(value)) is not None:
        digits = code.group(1)
        if len(digits) <= 4:
            digits = "".join(digit * 2 for digit in digits)
        return tuple(bytes.fromhex(digits[:6]))
    if (function := _FUNCTION.fullmatch(value)) is not None:
        return _from_function(function.group(1), _ARGUMENT.split(function.group(2).strip()))
    return None


def background(value: str) -> Colour | None:
    """The colour the ``background`` shorthand paints; UNKNOWN under an image or a
    gradient; None if it names none."""
    if "url(" in value or "gradient(" in value:
        return UNKNOWN
    for part in _BACKGROUND_PART.finditer(value):
        found = colour(part.group())
        if found is not None:
            return found
    return None


def background_colour(value: str) -> str | None:
    """The colour of a ``background`` shorthand's value (lower-cased, escapes and comments
    read), as written if it is a name, ``#hex`` or a colour function of numbers (forms that
    carry nothing else); None if it has none. A colour in another function (a gradient's,
    a URL's ``#fff``) is none of the background's own."""
    parts: list[str] = _SHORTHAND_PART.findall(_outside_functions(_CSS_STRING.sub(" ", value)))
    for part in parts:
        if (part in _NAMED or _HEX.fullmatch(part) or _NUMERIC_FUNCTION.fullmatch(part)) \
                and colour(part) is not None:
            return part
    return None


def _outside_functions(value: str) -> str:
    """``value`` with each function but a colour one (``rgb()``, ``hsl()``) and what it
    holds as a space."""
    kept: list[str] = []
    depth = 0
    whole = False  # in a colour function opened outside any other
    for piece in _CSS_PIECE.findall(value):
        if piece.endswith("("):
            if depth == 0:
                whole = piece in _COLOUR_FUNCTIONS
                kept.append(" ")
            depth += 1
        elif piece == ")" and depth:
            depth -= 1
            if depth == 0 and not whole:
                continue
        if depth == 0 or whole:
            kept.append(piece)
        if depth == 0:
            whole = False
    return "".join(kept)


def legacy(value: str) -> str | None:
    """The colour (``#rrggbb``) readers paint for a colour attribute's ``value``, by
    HTML's rules for parsing a legacy colour value (WHATWG, common microsyntaxes):
    any string is a colour, "chucknorris" #c00000 and "rgb(0, 0, 0)" #b00000; None
    for no colour ("" and "transparent")."""
    if not value:
        return None  # a blank value is stripped after this test: black, as Chrome reads it
    value = value.strip(_ASCII_WHITESPACE)
    name = ascii_lower(value)
    if name == "transparent":
        return None
    if name in _NAMED:
        return "#" + _NAMED[name].hex()
    if len(value) == 4 and value[0] == "#" and _HEX_DIGITS.issuperset(value[1:]):
        return "#" + "".join(digit * 2 for digit in name[1:])
    return "#" + "".join(f"{int(part, 16):02x}" for part in _legacy_parts(value))


def _legacy_parts(value: str) -> list[str]:
    """The red, green and blue hex digits of a legacy colour value that is no name and
    no ``#rgb``, as the rules cut them."""
    value = "".join("00" if ord(char) > 0xFFFF else char for char in value)
    value = value[:128].removeprefix("#")
    digits = "".join(char if char in _HEX_DIGITS else "0" for char in value) or "0"
    digits += "0" * (-len(digits) % 3)
    length = len(digits) // 3
    parts = [digits[start:start + length][-8:] for start in range(0, len(digits), length)]
    while len(parts[0]) > 2 and all(part[0] == "0" for part in parts):
        parts = [part[1:] for part in parts]
    return [part[:2] for part in parts]


def near(text: Colour | None, backdrop: Colour | None) -> bool:
    """Whether text in the colour ``text`` on ``backdrop`` cannot be told from it."""
    if not text or not backdrop:
        return False
    return all(abs(a - b) <= NEAR for a, b in zip(text, backdrop, strict=True))


def _from_function(kind: str, arguments: list[str]) -> Colour | None:
    if len(arguments) < 3:
        return None
    try:
        if kind == "rgb":
            return tuple(_channel(argument) for argument in arguments[:3])
        hue = float(arguments[0].removesuffix("deg")) / 360 % 1.0
        saturation, lightness = (_percent(argument) for argument in arguments[1:3])
        return tuple(round(part * 255) for part in colorsys.hls_to_rgb(hue, lightness, saturation))
    except ValueError:  # not a number, or nan
        return None


def _channel(argument: str) -> int:
    """A red, green or blue argument: 0 to 255, or a percentage."""
    if argument.endswith("%"):
        return round(_percent(argument) * 255)
    return round(min(max(float(argument), 0.0), 255.0))


def _percent(argument: str) -> float:
    return min(max(float(argument.removesuffix("%")) / 100, 0.0), 1.0)
