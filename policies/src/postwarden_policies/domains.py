"""Domains and addresses in the one form rules compare them in.

Domains compare as DNS does: lower case, internationalised labels as
A-labels, no trailing dot, on the policy's side and the message's alike, so
no spelling of a domain gets past a rule written in another.
"""

from __future__ import annotations

import encodings.idna
import re
import unicodedata

import idna

# The full stops IDNA reads as label separators (RFC 3490, section 3.1).
_DOTS = re.compile("[.\u3002\uff0e\uff61]")
_LDH_LABEL = re.compile(r"[a-z0-9-]{1,63}")
# What quoting adds to a local part: quotes, and the backslash of a quoted pair.
_QUOTING = re.compile(r'\\(.)|"', re.DOTALL)
# What quoting hides from address syntax: quoted strings and quoted pairs. Runs of
# plain characters one possessive repeat: sre kept a backtracking point a character
# of an alternation (126 MB for a From of 1 MB, which the policy test API takes).
_QUOTED = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?|\\.', re.DOTALL)


def _lenient_a_label(label: str) -> str | None:
    """The label's IDNA 2003 A-label, or None. IDNA 2008 refuses symbols and emoji
    (``💩.la``), but registries sell them and browsers and resolvers take them
    (``xn--ls8h.la``): a sender must not get past a rule by spelling one in Unicode."""
    try:
        encoded = encodings.idna.ToASCII(label).decode("ascii").lower()
    except UnicodeError:
        return None
    return encoded if _LDH_LABEL.fullmatch(encoded) else None


def _a_label(label: str, strict: bool) -> str:
    if label.isascii():
        return label.lower()
    try:
        mapped = idna.uts46_remap(label, std3_rules=False)
        return mapped if mapped.isascii() else idna.alabel(mapped).decode("ascii")
    except UnicodeError:  # idna.IDNAError among them
        lenient = _lenient_a_label(label)
        if lenient is not None:
            return lenient
        if strict:
            raise
        return label.lower()  # no resolver accepts it either; kept as written


def unicode_domain(domain: str) -> str:
    """The U-label form of an A-label ``domain`` (IDNA 2008, else IDNA 2003, as
    :func:`ascii_domain` makes it); raises UnicodeError when it has none."""
    try:
        return idna.decode(domain)
    except UnicodeError:
        return domain.encode("ascii").decode("idna")


def full_stops_as_dots(domain: str) -> str:
    """``domain`` with the full stops IDNA reads as label separators (``。``) as dots."""
    return _DOTS.sub(".", domain)


def ascii_domain(domain: str, *, strict: bool = False) -> str:
    """``domain`` lower-case, without trailing dots, each non-ASCII label as its A-label.

    A label that is no valid IDN is kept as written (message side), or raises
    UnicodeError (``idna.IDNAError``) with ``strict`` (policy side).
    """
    if domain.isascii():
        return domain.lower().rstrip(".")
    labels = full_stops_as_dots(domain).rstrip(".").split(".")
    return ".".join(_a_label(label, strict) for label in labels)


def normal_address(value: str, *, strict: bool = False) -> str:
    """Address without angle brackets, its domain as :func:`ascii_domain` gives it and its
    local part :func:`caseless` (``jörg`` typed as ``o`` and U+0308 is ``jörg``).

    The mailbox Postfix delivers to, as the client may write it otherwise (see
    :func:`_rewritten`) and its local part unquoted (``"ceo"@example.com``): the milter
    is given the address as written.
    "" stays the null sender; raises like :func:`ascii_domain` with ``strict``.
    """
    local, at, domain = _rewritten(value.strip().strip("<>")).rpartition("@")
    local = _QUOTING.sub(lambda found: found[1] or "", local)  # a quoted pair: its character
    return caseless(local) + at + ascii_domain(domain, strict=strict)


def _rewritten(address: str) -> str:
    """``address`` as Postfix's trivial-rewrite rewrites it (rewrite_tree, its defaults):
    without a source route (``@relay.example:ceo@example.com``) and, without an ``@``,
    ``example.com!ceo`` (swap_bangpath) and ``ceo%example.com`` (allow_percent_hack) as
    ``ceo@example.com``; what quotes hide is no syntax. One with neither stays as it is:
    Postfix appends its myorigin, which only the milter learns (``Envelope.origin``)."""
    masked = _QUOTED.sub(lambda found: " " * len(found[0]), address)  # same places
    colon = masked.find(":")
    if masked.startswith("@") and 0 < colon < len(masked) - 1:
        address, masked = address[colon + 1:], masked[colon + 1:]
    if "@" in masked:
        return address
    if (bang := masked.find("!")) >= 0:
        return f"{address[bang + 1:]}@{address[:bang]}"
    if (percent := masked.rfind("%")) >= 0:
        return f"{address[:percent]}@{address[percent + 1:]}"
    return address


def caseless(text: str) -> str:
    """``text`` as it compares without regard to case: folded as Unicode folds case (as
    Postfix folds an address with SMTPUTF8: ``STRASSE`` is ``straße``, ``ﬁ`` is ``fi``,
    which lower() leaves apart), composed (NFC)."""
    return text.lower() if text.isascii() else unicodedata.normalize("NFC", text.casefold())
