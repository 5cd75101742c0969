"""HTML's conditional comments as Outlook reads them (:func:`as_outlook_shows`).

Browsers skip what ``<!--[if mso]>...<![endif]-->`` holds; Outlook's Word engine
shows it, so a body rule reads the text both ways.
"""

from __future__ import annotations

import re

# Conditional comments: hidden from browsers, shown by Outlook's Word engine when
# the condition holds ("downlevel-hidden"), or shown by browsers and by Outlook
# only when it holds ("downlevel-revealed", <!--[if !mso]><!-->...<!--<![endif]-->).
# One without its end runs to the end of the text (so each is scanned once).
_CONDITIONAL = re.compile(
    r"<!(?:--)?\[if\b([^\]>]{0,64})\](?:-->|>)(?:<!-->)?(.*?)(?:(?:<!--)?<!\[endif\](?:--)?>|\Z)",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION_TOKEN = re.compile(r"\s*(?:([!()&|])|(?:(lte?|gte?)\s+)?([a-z]+)(?:\s+([\d.]+))?)")
_OUTLOOK = {"mso": 16.0}  # Outlook 2016 and later; every other feature (IE) is false


def _holds(condition: str) -> bool:
    """A conditional comment's condition as Outlook reads it; one we cannot read holds."""
    tokens: list[tuple[str, ...]] = []
    pos = 0
    while pos < len(condition.rstrip()):
        token = _CONDITION_TOKEN.match(condition.lower(), pos)
        if token is None or token.end() == pos:
            return True
        tokens.append(tuple(part or "" for part in token.groups()))
        pos = token.end()

    def factor(i: int) -> tuple[bool, int]:
        if i >= len(tokens):
            return True, i
        sign, op, feature, version = tokens[i]
        if sign == "!":
            value, i = factor(i + 1)
            return not value, i
        if sign == "(":
            value, i = either(i + 1)
            return value, i + 1 if i < len(tokens) and tokens[i][0] == ")" else i
        have = _OUTLOOK.get(feature)
        if have is None or not version:
            return have is not None, i + 1
        want = float(version) if version.replace(".", "", 1).isdigit() else 0.0
        return {"lt": have < want, "lte": have <= want, "gt": have > want,
                "gte": have >= want}.get(op, have == want), i + 1

    def both(i: int) -> tuple[bool, int]:
        value, i = factor(i)
        while i < len(tokens) and tokens[i][0] == "&":
            other, i = factor(i + 1)
            value = value and other
        return value, i

    def either(i: int) -> tuple[bool, int]:
        value, i = both(i)
        while i < len(tokens) and tokens[i][0] == "|":
            other, i = both(i + 1)
            value = value or other
        return value, i

    return either(0)[0]


def as_outlook_shows(text: str) -> str:
    """The HTML ``text`` with its conditional comments as Outlook reads them: what
    their conditions keep, in place."""
    return _CONDITIONAL.sub(lambda c: c.group(2) if _holds(c.group(1)) else "", text)

