"""How mail readers read an entity's headers: its media type, disposition, file
names and, for the message, its From address.

Each function takes the parser's ``flags`` and adds the flags of
:mod:`postwarden_policies.mimeflags`' table for what it found ambiguous or
malformed; none raises.
"""

from __future__ import annotations

import re
from email.headerregistry import Address, AddressHeader, HeaderRegistry

from postwarden_policies.facts import Header
from postwarden_policies.headers import (
    NAME_PARAMETERS,
    decode_words,
    first_of_each,
    parameter_list,
)

# Left-to-right and right-to-left override: Latin letters after one are shown reversed.
# (Marks, embeddings and isolates occur in legitimate right-to-left names and
# do not reorder Latin letters.)
BIDI_OVERRIDE = re.compile("[\u202d\u202e]")
# Headers Thunderbird takes a part's name from when neither filename= nor name=
# gives one (MimeHeaders_get_name); no RFC has them, but they occur.
_NAME_HEADERS = ("content-name", "x-sun-data-name")
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")
_ADDR_SPEC = r"([^<>()\s\",;:\\@\[\]]+@[^<>()\s\",;:\\@\[\]]+)"
# "Name" <a@b>, Name <a@b> (no specials in the name) or a bare a@b: read alike by all.
# The unquoted name takes in the whitespace around it: adjacent repeats that can
# match the same characters (a name, then \s*) backtrack quadratically on a long
# run, and Postfix lets a 100 KB header through.
_SIMPLE_FROM = re.compile(
    r"(?:\s*\"[^\"\\]*\"\s*|[^\"<>()\[\],;:@\\]*)<" + _ADDR_SPEC + r">\s*|\s*" + _ADDR_SPEC + r"\s*"
)
_ADDRESSES = HeaderRegistry()
# The first <a@b> and the first run of address characters with an '@' inside, each
# whole. Linear for the same reason: the local part stops at its first '@' after
# its first character, and a bare address starts only where a run does.
_ANGLE_ADDR = re.compile(r"<\s*([^<>\s][^<>\s@]*@[^<>\s]+)\s*>")
_NOT_BARE = r"\s<>,;:\"()"  # what ends a bare address
_BARE_ADDR = re.compile(rf"(?<![^{_NOT_BARE}])[^{_NOT_BARE}][^{_NOT_BARE}@]*@[^{_NOT_BARE}]+")
_COMMENT = re.compile(r"\([^()]*\)")
# The email package's parser slices the rest of the value at each token, so its
# time grows with length times tokens: seconds for 10 KB of '"a"a"a...', 'a a a
# ...' or 'a,a,a...', and Postfix lets a 100 KB header through. It is handed a
# From whose length times runs of the separators that start new tokens stays
# within a line's worth (998 characters) squared; a costlier one is left to the
# plain search and flagged. So is one past four lines' worth: even without such
# runs, a '<a@a@...' of 100 KB took it a second.
_TOKEN_BREAKS = re.compile(r'[\s.",:;\\]+')
_STRICT_PARSE_COST = 998 * 998
_STRICT_PARSE_CHARS = 4 * 998
_TYPE_END = re.compile(r"[\s;,]")


def header_copies(headers: tuple[Header, ...], name: str, flags: set[str],
                  flag: str = "duplicate_mime_header") -> list[str]:
    """Every copy of a header allowed once, as text; more than one sets ``flag``
    (the first is used)."""
    # Parameters are parsed from the undecoded text; 8-bit bytes become U+FFFD.
    values = [
        h.raw_value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        for h in headers
        if h.name.lower() == name
    ]
    if len(values) > 1:
        flags.add(flag)
    return values


def media_type(value: str, default: str, flags: set[str]) -> str:
    """The type in Content-Type's main value (lower case), as mail readers recover it.

    Python's email package drops comments; Thunderbird cuts the type at
    whitespace, ';' or ',' and keeps what follows the last '?'. Readers may
    disagree on such a value, so it is flagged; one with no type reads as
    ``default``.
    """
    if not value or _MEDIA_TYPE.match(value):
        return value or default
    flags.add("malformed_content_type")
    token = _TYPE_END.split(_COMMENT.sub("", value).lstrip(), 1)[0].rpartition("?")[2]
    return token if _MEDIA_TYPE.match(token) else default


def flag_conflicting(parameters: list[tuple[str, str]], flags: set[str]) -> None:
    """Flag a boundary or charset given twice with different values.

    Readers disagree on which counts (Thunderbird prefers ``boundary*=``, Python's
    email package the first one), so the same bytes split or decode two ways.
    """
    boundaries = {value for name, value in parameters if name == "boundary"}
    charsets = {value.strip().lower() for name, value in parameters if name == "charset"}
    if len(boundaries) > 1 or len(charsets) > 1:
        flags.add("conflicting_parameter")


def boundary(media_type: str, params: dict[str, str], flags: set[str]) -> str:
    """A multipart's boundary ("" for any other type), flagged when it is missing, or
    one RFC 2046 forbids, which readers split at differently: outside ASCII
    (Thunderbird at an RFC 2231 value's bytes, not the UTF-8 of their text; Python's
    email package at none), or ending in a space (Python strips it, Thunderbird
    splits at none)."""
    if not media_type.startswith("multipart/"):
        return ""
    value = params.get("boundary", "")
    if not value:
        flags.add("missing_boundary")
    elif not value.isascii() or value.endswith((" ", "\t")):
        flags.add("malformed_content_type")
    return value


def disposition(
    headers: tuple[Header, ...], type_params: list[tuple[str, str]], other_types: list[str],
    flags: set[str],
) -> tuple[str | None, tuple[str, ...]]:
    """"attachment", "inline" or None, and the part's file names (see :func:`file_names`).

    ``type_params`` are the first Content-Type's parameters, ``other_types``
    the text of any further Content-Type headers.
    """
    copies = header_copies(headers, "content-disposition", flags)
    disposition, parameters, _ = parameter_list(next(iter(copies), ""), flags)
    named = [("name", h.value) for key in _NAME_HEADERS for h in headers if h.name.lower() == key]
    shown = (
        first_of_each(parameters).get("filename")
        or first_of_each(type_params).get("name")
        or first_of_each(named).get("name")
    )
    every = parameters + type_params + named
    for value in copies[1:] + other_types:
        every += parameter_list(value, flags)[1]
    filenames = file_names((shown or "").strip() or None, every, flags)
    if disposition in ("attachment", "inline"):
        return disposition, filenames
    # RFC 2183: unknown dispositions are attachments.
    return ("attachment" if disposition else None), filenames


def file_names(
    shown: str | None, parameters: list[tuple[str, str]], flags: set[str]
) -> tuple[str, ...]:
    """Every name a mail reader might give the part, the one we show first.

    Readers disagree on which wins: ``filename`` or ``name``, the RFC 2231
    form or the plain one, the first copy or the last, the first
    Content-Disposition header or another, a Content-Name or X-Sun-Data-Name
    header (Thunderbird's fallbacks, listed as ``name``). ``report.pdf`` beside
    ``filename*=''report.exe`` must not get past a ``*.exe`` rule, so rules
    test them all.
    """
    names = dict.fromkeys([shown] if shown else [])
    names.update(
        dict.fromkeys(v.strip() for n, v in parameters if n in NAME_PARAMETERS and v.strip())
    )
    # Mozilla decodes RFC 2047 words in a filename*= value too, and ends a name at a NUL.
    names.update(
        dict.fromkeys(read for name in list(names) if (read := _mozilla_name(name, flags)))
    )
    if len(names) > 1:
        flags.add("ambiguous_filename")
    if any(BIDI_OVERRIDE.search(name) for name in names):
        flags.add("bidi_override")
    names.update(dict.fromkeys(saved for name in list(names) for saved in saved_names(name)))
    return tuple(names)


def saved_names(name: str) -> list[str]:
    """The names a Windows reader may save a file ``name`` under, when they differ from
    it: without trailing dots and spaces ("a.js. " is saved as a.js), and, NTFS taking
    what follows a colon for a stream of the file named before it, the name before the
    first colon ("a.exe::$DATA", the unnamed stream, is the file a.exe)."""
    candidates = (name.rstrip(". "), name.partition(":")[0].rstrip(". "))
    return [saved for saved in dict.fromkeys(candidates) if saved and saved != name]


def _mozilla_name(name: str, flags: set[str]) -> str:
    return decode_words(name, flags).split("\0", 1)[0].strip()


def first_value(headers: tuple[Header, ...], name: str) -> str | None:
    return next((h.value for h in headers if h.name.lower() == name), None)


def from_address(headers: tuple[Header, ...], flags: set[str]) -> str | None:
    """The first From address as readers read it, from the raw (undecoded) value, so an
    encoded word in the display name is never taken for an address.

    The common forms match a strict pattern; anything else goes through the
    RFC 5322 parser of Python's email package (comments, quoted display names,
    folding around ``@``). When a plain search for an address finds another
    domain there, readers may well show either: flagged ``ambiguous_from``;
    so is a value that parser fails on or would take too long on (``_STRICT_PARSE_COST``,
    ``_STRICT_PARSE_CHARS``).
    """
    raw = next((h.raw_value for h in headers if h.name.lower() == "from"), None)
    if not raw:
        return None
    simple = _SIMPLE_FROM.fullmatch(raw)
    if simple:
        return (simple.group(1) or simple.group(2)).lower()
    costly = (len(raw) > _STRICT_PARSE_CHARS
              or len(raw) * len(_TOKEN_BREAKS.findall(raw)) > _STRICT_PARSE_COST)
    header = None if costly else _strict_parse(raw)
    broken = header is None
    addresses: tuple[Address, ...] = (
        header.addresses if isinstance(header, AddressHeader) else ()
    )
    parsed = next((a.addr_spec for a in addresses if "@" in a.addr_spec), None)
    uncommented = _COMMENT.sub(" ", raw)
    found = _ANGLE_ADDR.search(uncommented) or _BARE_ADDR.search(uncommented)
    searched = found.group(found.lastindex or 0) if found else None
    if broken or (parsed and searched and _domain(parsed) != _domain(searched)):
        flags.add("ambiguous_from")
    address = parsed or searched
    return address.lower() if address else None


def _strict_parse(raw: str) -> object | None:
    try:
        return _ADDRESSES("from", raw)
    except Exception:  # noqa: BLE001 - its parser raises IndexError, AttributeError, ...
        return None


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower()
