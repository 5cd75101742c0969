"""RE2 patterns for everything that runs against message content.

RE2 matches in linear time, so neither a policy's regex nor a hostile message
can stall the filter: with its DFA, which needs room beside the program in
the pattern's memory cap; without room, RE2 runs every search in its NFA, a
thousand times slower (seconds on a message of megabytes), so a large program
gets a larger cap. Globs (fnmatch syntax: ``*``, ``?``, ``[...]``,
``[!...]``) are translated to RE2 too, a whole list into one alternation.

Compiling is bounded too: a pattern's program (``\\pL{440}`` is half a million
instructions and 0.2 s to build) may hold at most :data:`MAX_PROGRAM_SIZE`
instructions, and inside :func:`compile_budget` (a policy set's load) all of
them together :data:`MAX_SET_PROGRAM_SIZE`; past that nothing more is
compiled. The same pattern written twice (an alias) is compiled once.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import re2

from .spec import SpecError

# RE2 stops compiling a pattern whose program would need more memory than this.
MAX_PATTERN_MEMORY = 8 * 1024 * 1024
MAX_PROGRAM_SIZE = 100_000  # instructions of one pattern: \pL{80}, about 30 ms to build
MAX_SET_PROGRAM_SIZE = 2_000_000  # of a policy set's patterns together: about a second
# Past about 57,000 instructions RE2's DFA finds no room beside the program in
# MAX_PATTERN_MEMORY; twice that leaves it room up to past MAX_PROGRAM_SIZE.
_DFA_ROOM_SIZE = 50_000


@dataclass
class _Budget:
    left: int = MAX_SET_PROGRAM_SIZE
    compiled: dict[tuple[str, str], Pattern] = field(default_factory=dict)


_BUDGET: ContextVar[_Budget | None] = ContextVar("postwarden_compile_budget", default=None)


@contextmanager
def compile_budget() -> Iterator[None]:
    """Bound what the patterns compiled inside may cost together (one policy set's load)."""
    token = _BUDGET.set(_Budget())
    try:
        yield
    finally:
        _BUDGET.reset(token)


class Pattern:
    """A compiled RE2 pattern; :meth:`test` searches (globs are anchored)."""

    __slots__ = ("_compiled", "source")

    def __init__(self, source: str, compiled: Any) -> None:
        self.source = source
        self._compiled = compiled

    def test(self, value: str) -> bool:
        # Matching bytes skips the wrapper's per-call offset bookkeeping for str (about 2x).
        return self._compiled.search(value.encode("utf-8", "replace")) is not None

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"


def re2_options(max_mem: int = MAX_PATTERN_MEMORY) -> Any:
    """RE2's options for our patterns: the memory cap, and no printing to stderr."""
    options = re2.Options()
    # RE2 would print every bad pattern, and every time a DFA runs out of memory.
    options.log_errors = False
    options.max_mem = max_mem
    return options


SHOWN_CHARS = 100  # of a pattern in an issue: a glob list of 20,000 globs is one pattern
# RE2's error for a program past MAX_PATTERN_MEMORY: too large, however valid.
_PATTERN_TOO_LARGE = "pattern too large"


# What a Python or PCRE pattern uses that RE2 leaves out to search in linear time, by
# RE2's words for it: its words alone ("invalid escape sequence: \\1") tell of a typo.
_LACKED = (
    (re.compile(r"invalid perl operator: \(\?<?[=!]"),
     "RE2 has no lookahead or lookbehind: match the text around, or put a second "
     "condition under not:"),
    (re.compile(r"invalid escape sequence: \\[1-9k]|invalid perl operator: \(\?P$"),
     "RE2 has no backreferences"),
    (re.compile(r"invalid escape sequence: \\Z"),
     "RE2 writes the end of the text as \\z"),
    (re.compile(r"bad repetition operator: .\+|invalid perl operator: \(\?>"),
     "RE2 has no possessive repeats nor atomic groups, and needs none: it never backtracks"),
)


def _lacked(detail: str) -> str:
    """" (why)" when RE2's error ``detail`` is about a feature it lacks, else ""."""
    return next((f" ({why})" for words, why in _LACKED if words.match(detail)), "")


def _quoted(shown: str) -> str:
    """A pattern as its author wrote it (repr doubles every backslash), unless it holds
    characters a one-line message should not; cut after SHOWN_CHARS characters."""
    cut = shown[:SHOWN_CHARS]
    quoted = f"'{cut}'" if cut.isprintable() else repr(cut)
    return quoted if cut == shown else f"{quoted}... ({len(shown)} characters)"


def _compile(source: str, what: str, shown: str) -> Pattern:
    budget = _BUDGET.get()
    if budget is not None:
        known = budget.compiled.get((source, shown))
        if known is not None:
            return known
        if budget.left <= 0:
            raise SpecError(f"{what} {_quoted(shown)} not compiled: the policy set's patterns "
                            f"together exceed {MAX_SET_PROGRAM_SIZE} RE2 instructions")
    try:
        compiled = re2.compile(source.encode("utf-8"), re2_options())
    except re2.error as exc:
        detail = exc.args[0] if exc.args else "unknown error"
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        if detail.startswith(_PATTERN_TOO_LARGE):
            raise SpecError(f"{what} {_quoted(shown)} is too large: RE2 compiles at most "
                            f"{MAX_PATTERN_MEMORY // 2**20} MiB of program (split it between "
                            "conditions under any:)") from None
        raise SpecError(f"invalid {what} {_quoted(shown)}: {detail}{_lacked(detail)}") from None
    size = compiled.programsize
    if budget is not None:
        budget.left -= size
    if size > MAX_PROGRAM_SIZE:
        raise SpecError(f"{what} {_quoted(shown)} is too complex: {size} RE2 instructions, "
                        f"at most {MAX_PROGRAM_SIZE} (a counted repeat of a Unicode class?)")
    if size > _DFA_ROOM_SIZE:  # again, with room for its DFA (see the module text)
        compiled = re2.compile(source.encode("utf-8"), re2_options(2 * MAX_PATTERN_MEMORY))
    pattern = Pattern(shown, compiled)
    if budget is not None:
        budget.compiled[(source, shown)] = pattern
    return pattern


# Control characters but tab and line ends: in a pattern only a YAML escape in a double-
# quoted value puts one ("\bfree\b" is backspaces, not word boundaries), and the rule
# would silently never match; RE2 writes one as \x08 if that is what is meant.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_YAML_ESCAPES = {"\x00": "0", "\x07": "a", "\x08": "b", "\x0b": "v", "\x0c": "f", "\x1b": "e"}


# A \b (not a backslash escaped before a b) beside a character outside ASCII, across
# the brackets of a group or class opened after it or closed before it: RE2's word
# boundaries know ASCII word characters only, so \bcafé\b holds nowhere in "un café noir".
_ASCII_BOUNDARY = re.compile(
    r"(?<!\\)(?:\\\\)*\\b(?:\((?:\?[a-zA-Z]*:)?|\[)*([^\x00-\x7f])"
    r"|([^\x00-\x7f])[)\]]*\\b")
_WORD_START = r"(?:^|[^\pL\pN_])"  # what \b means before a word, outside ASCII too


def _check_boundaries(source: str) -> None:
    """Refuse a word boundary beside a letter or digit outside ASCII: the rule would
    silently never match where its author's language writes that word."""
    for found in _ASCII_BOUNDARY.finditer(source):
        char = found[1] or found[2]
        if char.isalnum():
            raise SpecError(
                f"RE2 regular expression {_quoted(source)} has \\b beside {char!r}, which "
                "RE2's \\b takes for no word character (it knows ASCII letters, digits and _ "
                f"only): it holds at no start or end of such a word; write {_WORD_START} "
                "before the word and (?:[^\\pL\\pN_]|$) after it")


# RE2's classes that know ASCII only (not a backslash escaped before them).
_ASCII_WORDS = re.compile(r"(?<!\\)(?:\\\\)*(\\[wW]|\[:(?:alpha|alnum|word|upper|lower):\])")
_BOUNDARY = r"(?<!\\)(?:\\\\)*\\[bB]"
# A Unicode class (\pL, \p{Cyrillic}), a bracket class not negated or a letter outside
# ASCII, then what may stand between it and a boundary: a repeat, the brackets of groups.
_CLASS = r"(\\[pP](?:\{[^}]*\}|[A-Za-z])|\[(?!\^)(?:\\.|[^\]\\])+\]|[^\x00-\x7f])"
_CLASS_BOUNDARY = re.compile(
    rf"{_CLASS}(?:[*+?]|\{{[0-9,]*\}})?\??\)*{_BOUNDARY}"
    rf"|{_BOUNDARY}(?:\((?:\?[a-zA-Z]*:)?)*{_CLASS}")
_WIDE_ESCAPE = re.compile(r"\\[pP]|\\x\{0*[89a-fA-F][0-9a-fA-F]|\\x\{0*[1-9a-fA-F][0-9a-fA-F]{2,}")


def _wide_class(found: str) -> bool:
    """Whether the class ``found`` takes letters outside ASCII."""
    return bool(_WIDE_ESCAPE.search(found)) or any(
        not c.isascii() and c.isalpha() for c in found)


def ascii_only_warning(source: str) -> str | None:
    """Why the valid ``source`` likely misses words outside ASCII, or None: RE2's ``\\w``
    and ``[[:alpha:]]`` know ASCII only (``\\w+ рублей``), and so does a ``\\b`` or ``\\B``
    beside a class of letters outside it (a Cyrillic class then ``\\b`` ends no word); one beside
    ASCII holds where it should (``\\b(?:café)``)."""
    words = _ASCII_WORDS.search(source)
    if words is not None and any(not c.isascii() and c.isalpha() for c in source):
        what = f"uses {words[1]} with letters outside ASCII"
    elif found := next((f for f in _CLASS_BOUNDARY.finditer(source)
                        if _wide_class(f[1] or f[2])), None):
        what = f"has {found[0]}, a boundary beside letters outside ASCII"
    else:
        return None
    return (f"RE2 regular expression {_quoted(source)} {what}: RE2's \\w, \\b and "
            "[[:alpha:]] know ASCII letters, digits and _ only, so it misses words outside "
            "ASCII; write \\pL (a letter) and \\pN (a digit) for them: [\\pL\\pN_] for \\w, "
            f"{_WORD_START} for \\b before a word and (?:[^\\pL\\pN_]|$) after it")


# A flag group turning case-insensitivity on: (?i), (?is), (?i:...), (?i-s:...).
_CASELESS = re.compile(r"(?<!\\)(?:\\\\)*\(\?[a-zA-Z]*i[a-zA-Z]*(?:-[a-zA-Z]*)?[:)]")


def case_folding_warning(source: str, globs: AbstractSet[str] | None = None) -> str | None:
    """Why a case-insensitive pattern ``source`` (a glob of the list ``globs`` holds in
    lower case always is) likely misses a spelling its author meant, or None: RE2 folds
    case one character for one (simple folding), so a letter whose case folds to two (ß
    to ss, the ligature ﬁ to fi) matches neither: (?i)straße misses STRASSE. Not where
    both are written (``(?:ß|ss)``, a glob listed with ss in its place too)."""
    if globs is None and not _CASELESS.search(source):
        return None
    char = next((c for c in dict.fromkeys(source)
                 if len(c.casefold()) > 1 and not _both_written(source, c, globs)), None)
    if char is None:
        return None
    folded = char.casefold()
    other = (f"list a glob with {folded} in its place too" if globs is not None
             else f"write both spellings, as in (?:{char}|{folded})")
    what = "glob" if globs is not None else "RE2 regular expression"
    return (f"{what} {_quoted(source)} is case-insensitive, but RE2 folds case one "
            f"character for one: {char!r} matches neither {folded!r} nor "
            f"{folded.upper()!r}; {other}")


def _both_written(source: str, char: str, globs: AbstractSet[str] | None) -> bool:
    """Whether the other spelling of ``char`` is written beside it: as an alternative in
    the pattern, or as a glob of the list."""
    folded = char.casefold()
    if globs is not None:
        return source.replace(char, folded).lower() in globs
    char, folded = re.escape(char), re.escape(folded)
    both = f"{char}\\|{folded}|{folded}\\|{char}"
    return re.search(both, source, re.IGNORECASE) is not None


# An alternative with nothing in it: a | first or last, in a group, or beside another
# (not one a backslash escapes; one in a class never matches the empty text anyway).
_EMPTY_ALTERNATIVE = re.compile(
    r"\A\||(?<!\\)(?:\\\\)*(?:\|(?=\||\)|\Z)|\((?:\?[a-zA-Z-]*:)?\|)")
_NOTHING_LIKE_TEXT = "\x01"  # a text no pattern is written for


def empty_alternative_warning(pattern: Pattern) -> str | None:
    """Why a pattern that matches every text likely does so by mistake, or None: one with
    an empty alternative (``viagra|cialis|``, a | left over when editing a list) matches
    the empty text, so everywhere, and its rule holds for every message. Not one meant to
    match anything (``.*``, a header's presence), which has no such alternative."""
    if not (pattern.test("") and pattern.test(_NOTHING_LIKE_TEXT)):
        return None
    if not _EMPTY_ALTERNATIVE.search(pattern.source):
        return None
    return (f"RE2 regular expression {_quoted(pattern.source)} has an empty alternative "
            "(a | with nothing on one side), so it matches every text and its condition "
            "holds for every value: remove that |, or write (?:...)? for a part that may be "
            "left out")


# A word in brackets not escaped ([SPAM], [External]): a Subject tag meant as text. Some
# capital among three or more letters, as tags are written, not a class ([aeiou], [0-9]).
_BRACKETED_WORD = re.compile(r"(?<!\\)\[([A-Za-z0-9 ]*[A-Z][A-Za-z0-9 ]*)\]")


def bracketed_word_warning(source: str) -> str | None:
    """Why a pattern likely means a tag's text where it has a class, or None: ``[SPAM]``
    matches one character of S, P, A and M, so any Subject holding an S."""
    found = next((word for word in _BRACKETED_WORD.finditer(source) if len(word[1]) >= 3),
                 None)
    if found is None:
        return None
    return (f"RE2 regular expression {_quoted(source)} has {found[0]}, a class that matches "
            f"one character of {found[1]}, not that text: write \\[{found[1]}\\] for the "
            f"tag {found[0]} with its brackets")


def compile_regex(source: str) -> Pattern:
    """A user's regular expression, RE2 syntax, searched (not anchored)."""
    _check_boundaries(source)
    if control := _CONTROL.search(source):
        char = control.group()
        letter = _YAML_ESCAPES.get(char)
        fix = (f"a double-quoted YAML value reads \\{letter} as it: double the backslash "
               f"(\\\\{letter}) or quote the pattern with ' '" if letter
               else f"write it as \\x{ord(char):02x}")
        raise SpecError(f"RE2 regular expression {_quoted(source)} holds the control character "
                        f"U+{ord(char):04X}: {fix}")
    return _compile(source, "RE2 regular expression", source)


def glob_to_re2(glob: str) -> str:
    """Translate one fnmatch glob to an unanchored RE2 fragment."""
    if not glob:
        raise SpecError("invalid glob: empty pattern")
    out: list[str] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        i += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = i + 1 if glob[i : i + 1] == "!" else i
            end = glob.find("]", end + 1)  # a "]" right after "[" or "[!" is literal
            if end < 0:
                raise SpecError(f"invalid glob {glob!r}: '[' without a closing ']'")
            body = glob[i:end]
            negate = body.startswith("!")
            members = "".join(c if c == "-" else _literal(c) for c in body.removeprefix("!"))
            out.append(f"[{'^' if negate else ''}{members}]")
            i = end + 1
        else:
            out.append(_literal(char))
    return "".join(out)


# What regular expressions write and globs do not: an escape, anchors, alternatives, a
# group's flags, ".*" to start with (a glob's "*.*" is any name with a dot).
_LIKE_REGEX = re.compile(r"\\|\A\^|\$\Z|\||\(\?|\A\.\*")


def regex_in_glob_warning(glob: str) -> str | None:
    """Why ``glob`` looks written as a regular expression, or None: it would match what
    it says as a glob, where \\ and ^ $ | ( ) are characters of the name (``.*\\.exe``
    matches names that hold a backslash)."""
    found = _LIKE_REGEX.search(glob)
    if found is None:
        return None
    return (f"glob {_quoted(glob)} looks like a regular expression (it has {found[0]!r}): "
            "a glob has no escapes, anchors or alternatives (\\, ^, $, | and ( match "
            "themselves) and its . is a dot; write * for any characters, ? for one and "
            "[...] for one of a set, as in *.exe")


# A comma outside [...] (a blank before more too, where names hold none: a block's line
# break at the end is block_line_end's): globs written as one text ("*.exe, *.scr"),
# which match only a name holding ", ".
_COMMA = re.compile(r",(?![^\[]*\])")
_COMMA_OR_BLANK = re.compile(r"(?:,|\s(?=\S))(?![^\[]*\])")


def list_in_glob_warning(glob: str, *, names_hold_blanks: bool = True) -> str | None:
    """Why ``glob`` looks like several written as one, or None; ``names_hold_blanks``:
    the names it is matched against may hold a blank (file names; not host names nor
    types), so that only a comma looks like a separator."""
    separator = _COMMA if names_hold_blanks else _COMMA_OR_BLANK
    found = separator.search(glob)
    if found is None:
        return None
    matched = ("only a name that holds it" if names_hold_blanks
               else "nothing (no host name or type holds it)")
    escape = " (or [,] for a comma in the name)" if names_hold_blanks else ""
    # Each item quoted: unquoted, a glob that starts with * is a YAML alias.
    items = ", ".join(json.dumps(item.strip(), ensure_ascii=False)
                      for item in separator.split(glob) if item.strip())
    return (f"glob {_quoted(glob)} holds {found[0]!r}: several globs written as one text "
            f"match {matched}; write each as an item of a list, [{items}]{escape}")


def _literal(char: str) -> str:
    return char if char.isalnum() or ord(char) > 127 else f"\\x{{{ord(char):x}}}"


def compile_globs(globs: Iterable[str]) -> Pattern:
    """Globs matched case-insensitively against the whole value, as one pattern; in NFC
    (composed) form, as values they are tested on that may come decomposed."""
    globs = tuple(globs)
    fragments = "|".join(glob_to_re2(unicodedata.normalize("NFC", glob)) for glob in globs)
    return _compile(f"(?is)^(?:{fragments})$", "glob list", ", ".join(globs))
