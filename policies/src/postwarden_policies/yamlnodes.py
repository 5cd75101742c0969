"""YAML at the node level: composing a source and reporting issues at node marks.

Policies are read with ``yaml.compose`` and the SafeLoader's resolver only, so
nothing in a policy file can construct Python objects, and every value keeps
the mark (line, column) it came from for error messages. A :class:`Reader`
collects every issue of one source instead of stopping at the first.

Booleans, integers and floats are read as YAML 1.2's core schema writes them,
not as YAML 1.1 (PyYAML's default) does, so a value means what its author
wrote: ``010`` is ten, not eight; ``1:30``, ``1_000`` and ``1:30.5`` are text,
not numbers; only ``true`` and ``false`` (also ``True``, ``TRUE``, ...) are
booleans, and ``yes``, ``no``, ``on`` and ``off`` are text (a subject pattern
``NO``, a header value ``off``), as are dates (``2024-01-01``) and ``=``. NEL, LS
and PS (U+0085, U+2028, U+2029) are text too, not line breaks: lines are counted
as editors, git and grep count them. A ``%YAML`` directive other than 1.2 (1.1
too) is refused at its line, not silently read as 1.2. :func:`dump` writes plain
data back so that YAML 1.1 and 1.2 both read it as written. An integer past
:data:`MAX_INTEGER` does not read: Python refuses to parse thousands of digits,
and nothing in a policy or settings file needs more than 63 bits.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, cast

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.parser import Parser
from yaml.resolver import Resolver

from .errors import PolicyIssue, shown

# Aliases let a small document expand into a huge tree ("billion laughs"): reading
# stops once they have made it read this many values again. What is written out is
# bounded by MAX_SOURCE_CHARS (a generated list of 200,000 senders, the Rules API's
# rules) and counts for nothing here.
MAX_NODES = 100_000
MAX_NESTING = 32  # conditions inside conditions (not, any, all)
MAX_SOURCE_CHARS = 4 * 1024 * 1024
MAX_INTEGER = 2**63 - 1  # either side of zero: fits a signed 64-bit field
INTEGER_TOO_LARGE = f"integer too large: at most {MAX_INTEGER}"
NUMBER_TOO_LARGE = f"number too large: at most {sys.float_info.max:g}"
_MAX_DIGITS = 21  # 8**21 is 2**63

TAG_PREFIX = "tag:yaml.org,2002:"
INT_TAG = TAG_PREFIX + "int"
FLOAT_TAG = TAG_PREFIX + "float"
BOOL_TAG = TAG_PREFIX + "bool"
STR_TAG = TAG_PREFIX + "str"
MERGE_TAG = TAG_PREFIX + "merge"  # a << key
MERGE_KEY = "<<"
MERGE_KEYS_REFUSED = ("YAML merge keys (<<) are not supported: alias the whole value, or "
                      "write its keys out")
_YAML11_BREAKS = "\x85\u2028\u2029"  # NEL, LS, PS: line breaks to YAML 1.1 only
# YAML 1.2 core schema (10.3.2); the float pattern also matches integers, which
# resolve first.
_INT = re.compile(r"^(?:[-+]?[0-9]+|0x[0-9a-fA-F]+|0o[0-7]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
# The words PyYAML's YAML 1.1 reads as booleans, in its three spellings of each: text
# to this reader, yet a boolean field still takes them as before (spec.Scalar), so a
# policy written for the YAML 1.1 reader keeps loading and meaning what it did.
YAML11_BOOLEANS: Final[dict[str, bool]] = {
    spelling: value
    for word, value in (("yes", True), ("no", False), ("on", True), ("off", False))
    for spelling in (word, word.capitalize(), word.upper())
}


class _PlacingAliases(Composer):
    """PyYAML's composer, except that an alias becomes a shallow copy of its anchor's
    node marked where the alias is written, so an issue about the aliased value as a
    whole (a rule repeated with ``*r``) names the alias's line; what it holds stays the
    anchor's (shared, not copied: aliases cannot make composing expensive)."""

    restore: dict[int, int] = {}  # stand-ins back to the characters they stand for (compose)
    source = ""  # the text composed (compose): where a list item's "-" is
    directives: tuple[int, int] | None = None  # where the document's directives are written

    def compose_document(self) -> yaml.Node | None:
        start = cast(Parser, self).peek_event()  # type: ignore[no-untyped-call]
        self.directives = start.start_mark.index, start.end_mark.index  # "---" too, if any
        node: yaml.Node | None = super().compose_document()
        return node

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        events = cast(Parser, self)  # the parser it is mixed with: libyaml's or PyYAML's
        is_alias = events.check_event(yaml.AliasEvent)
        alias = events.peek_event() if is_alias else None  # type: ignore[no-untyped-call]
        node = super().compose_node(parent, index)
        if alias is None and isinstance(node, yaml.ScalarNode) and self.restore:
            node.value = node.value.translate(self.restore)  # once: its aliases share it
        if alias is None and isinstance(node, yaml.ScalarNode) and not node.style:
            _note_comment_after(node, self.source)
        if alias is not None and node is not None:
            node = copy.copy(node)
            node.start_mark, node.end_mark = alias.start_mark, alias.end_mark
        if isinstance(parent, yaml.SequenceNode) and isinstance(node, yaml.CollectionNode):
            node.start_mark = _item_start(self.source, node.start_mark)
        return node


# A comment right after a plain value whose first word touches its "#": "message: Ticket
# #12" is "Ticket" to YAML, and nearly always meant as text ("# note" reads as a comment).
_COMMENT_AFTER = re.compile(r"[ \t]+(#\S{1,40})")
_COMMENT_KEY = "postwarden_comment_after"  # in the node's attributes: its alias copies share it


def _note_comment_after(node: yaml.ScalarNode, source: str) -> None:
    if found := _COMMENT_AFTER.match(source, node.end_mark.index):
        vars(node)[_COMMENT_KEY] = found[1]


def comment_after(node: yaml.ScalarNode) -> str | None:
    """The start of a comment written right after a plain scalar's value ("#12"), which
    was likely meant as part of it; None when there is none."""
    found: str | None = vars(node).get(_COMMENT_KEY)
    return found


# A block list's "-" alone on its line (a comment after it aside), and a line of nothing.
_DASH_LINE = re.compile(r"[ \t]*(-)[ \t]*(?:#.*)?")
_EMPTY_LINE = re.compile(r"[ \t]*(?:#.*)?")


def _item_start(source: str, mark: yaml.Mark) -> yaml.Mark:
    """Where a list item written at ``mark`` begins: at its "-" when that stands alone
    on a line above (``-`` then the item's keys below), which is where the author sees
    it begin (a test case's line, an issue about the whole item); else ``mark``."""
    end = min(mark.index, len(source)) - 1  # back over the indentation only: a line may be long
    while end >= 0 and source[end] in " \t":
        end -= 1
    if end < 0 or source[end] not in "\r\n":  # not first on its line (in a flow list)
        return mark
    line = mark.line
    while end >= 0:  # up over blank and comment lines, to the "-"
        end -= source.startswith("\r\n", end - 1)  # the line ends at its CR
        start = max(source.rfind("\n", 0, end), source.rfind("\r", 0, end)) + 1
        line -= 1
        if dash := _DASH_LINE.fullmatch(source, start, end):
            # No buffer: no snippet of PyYAML's, which would quote another line.
            return yaml.Mark(mark.name, dash.start(1), line, dash.start(1) - start, None, 0)
        if not _EMPTY_LINE.fullmatch(source, start, end):
            return mark
        end = start - 1
    return mark


class _Loader(_PlacingAliases, yaml.CSafeLoader):
    """Composes with the safe resolver and YAML 1.2's booleans, integers and floats
    (the constructor is never asked to build anything). libyaml scans and parses:
    PyYAML's own scanner took seconds on the Rules API's largest policy."""

    def __init__(self, stream: str) -> None:
        yaml.CSafeLoader.__init__(self, stream)
        Composer.__init__(self)


class _ExplainingLoader(_PlacingAliases, yaml.SafeLoader):
    """The same in pure Python, run again on a source libyaml refused: its messages
    say what it expected and what it found ("but found '<stream end>'")."""


# YAML 1.1's timestamps and value (=) are not in YAML 1.2's core schema: text here.
_NOT_CORE = (INT_TAG, FLOAT_TAG, BOOL_TAG, TAG_PREFIX + "timestamp", TAG_PREFIX + "value")
_RESOLVERS = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NOT_CORE]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
}
for _loader in (_Loader, _ExplainingLoader):
    _loader.yaml_implicit_resolvers = copy.deepcopy(_RESOLVERS)
    _loader.add_implicit_resolver(INT_TAG, _INT, list("-+0123456789"))
    _loader.add_implicit_resolver(FLOAT_TAG, _FLOAT, list("-+0123456789."))
    _loader.add_implicit_resolver(BOOL_TAG, _BOOL, list("tTfF"))


class _Dumper(yaml.CSafeDumper):
    """Quotes every string that YAML 1.2 (this module) or YAML 1.1 would read as
    something else, so that a file it writes means the same to either reader.
    libyaml writes (PyYAML's emitter took a second on the Rules API's largest policy)."""


_Dumper.yaml_implicit_resolvers = {
    first: [
        *_Loader.yaml_implicit_resolvers.get(first, []),
        *yaml.SafeDumper.yaml_implicit_resolvers.get(first, []),
    ]
    for first in {*_Loader.yaml_implicit_resolvers, *yaml.SafeDumper.yaml_implicit_resolvers}
}
# Other YAML 1.1 readers take any spelling of these words, and y and n too.
_Dumper.add_implicit_resolver(
    BOOL_TAG, re.compile(r"^(?:yes|no|on|off|y|n)$", re.IGNORECASE), list("yYnNoO")
)


def _represent_text(dumper: _Dumper, text: str) -> yaml.ScalarNode:
    """A string, double-quoted if it holds NEL, LS or PS: libyaml escapes them there
    (\\N, \\L, \\P), and in other styles writes them as line breaks followed by
    indentation, which YAML 1.2 (this module) reads as text."""
    style = '"' if any(char in text for char in _YAML11_BREAKS) else None
    return dumper.represent_scalar(STR_TAG, text, style=style)


_Dumper.add_representer(str, _represent_text)


def dump(data: object) -> str:
    """Plain data (mappings, lists, strings, numbers, booleans, None) as YAML text, keys in
    their given order, that :func:`compose` and :func:`construct` read back unchanged."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


class _TooLarge(ConstructorError):
    """An integer scalar past MAX_INTEGER, or a number past a float's range (1e400)."""


def bounded_int(text: str, base: int = 10) -> int | None:
    """``int(text, base)``, or None past MAX_INTEGER either side of zero.

    Sign, base prefix and leading zeros off, past 21 digits (in base 8 or more) it is
    past 63 bits: refused before int() pays for thousands of decimal digits.
    """
    if len(text.lstrip("+-0ox")) > _MAX_DIGITS:
        return None
    value = int(text, base)
    return value if abs(value) <= MAX_INTEGER else None


class _Constructor(SafeConstructor):
    def _core_text(self, node: yaml.ScalarNode, pattern: re.Pattern[str], expected: str) -> str:
        """The scalar's text if YAML 1.2 reads it as ``pattern`` does; an explicit tag on
        other text (``!!int abc``, ``!!bool yes``, ``!!float 1:30``) does not read."""
        text = str(self.construct_scalar(node))
        if not pattern.fullmatch(text):
            raise ConstructorError(None, None, f"expected {expected}", node.start_mark)
        return text

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = self._core_text(node, _INT, "an integer")
        # "010" is ten (YAML 1.1 reads it as octal)
        value = bounded_int(text, {"0x": 16, "0o": 8}.get(text[:2], 10))
        if value is None:
            raise _TooLarge(None, None, INTEGER_TOO_LARGE, node.start_mark)
        return value

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        text = self._core_text(node, _FLOAT, "a number")
        value = float(text.lower().replace(".inf", "inf").replace(".nan", "nan"))
        if math.isinf(value) and "inf" not in text.lower():  # 1e400, not .inf
            raise _TooLarge(None, None, NUMBER_TOO_LARGE, node.start_mark)
        return value

    def construct_yaml_bool(self, node: yaml.ScalarNode) -> bool:
        return self._core_text(node, _BOOL, "true or false").lower() == "true"

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> dt.date:
        """PyYAML's, for text that is a possible timestamp: on other text under an explicit
        tag (``!!timestamp soon``, hour 25) it raised AttributeError or ValueError."""
        self._core_text(node, self.timestamp_regexp, "a timestamp")
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise ConstructorError(None, None, f"expected a timestamp: {exc}",
                                   node.start_mark) from None


# Its own table: add_constructor would copy the base's, which names the base's method.
_Constructor.yaml_constructors = {
    **SafeConstructor.yaml_constructors,
    INT_TAG: _Constructor.construct_yaml_int,
    FLOAT_TAG: _Constructor.construct_yaml_float,
    BOOL_TAG: _Constructor.construct_yaml_bool,
    TAG_PREFIX + "timestamp": _Constructor.construct_yaml_timestamp,
}
TAG_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
    "timestamp": "a timestamp",
    "binary": "binary data",
    "map": "a mapping",
    "seq": "a sequence",
}


def placed(node: yaml.Node, within: yaml.Node) -> yaml.Node:
    """The node to report ``node`` at: itself, or ``within`` (a node holding it) when it
    is written elsewhere, because ``within`` is an alias of what holds it."""
    start, end = within.start_mark, within.end_mark
    return node if start.index <= node.start_mark.index <= end.index else within


def first_at(first: yaml.Node, again: yaml.Node) -> str:
    """Where ``first`` is written, for an issue about ``again`` (a key given twice, a name
    used again): its line, and its column when both are on one line (a flow mapping)."""
    line = f"line {first.start_mark.line + 1}"
    if first.start_mark.line != again.start_mark.line:
        return line
    return f"{line}, column {first.start_mark.column + 1}"


def bracketed_texts(node: yaml.Node) -> list[str] | None:
    """The texts of a list written in brackets of scalars, untagged (``[EXT]``, as text
    unquoted is read), or None: what to show of a value meant as that text."""
    if not (isinstance(node, yaml.SequenceNode) and node.flow_style
            and node.tag == TAG_PREFIX + "seq"  # not !!python/object/apply:os.system [id]
            and all(isinstance(item, yaml.ScalarNode) for item in node.value)):
        return None
    return [item.value for item in node.value]


def describe(node: yaml.Node) -> str:
    """What a node holds, in words: 'a string', 'a mapping', ...; a scalar whose explicit
    tag its text does not read as is told so (``!!int abc`` is no "an integer")."""
    short = node.tag.removeprefix(TAG_PREFIX)
    name = TAG_NAMES.get(short)
    if name is None:
        return f"a value tagged {node.tag.replace(TAG_PREFIX, '!!')}"
    if isinstance(node, yaml.ScalarNode) and not _reads(node):
        return f"{shown(node.value)} tagged !!{short}, which is not {name}"
    return name


def _reads(node: yaml.ScalarNode) -> bool:
    """Whether the scalar's text reads as its tag says (an integer too large does)."""
    try:
        _Constructor().construct_object(node)
    except _TooLarge:
        return True
    except (ConstructorError, ValueError):
        return False
    return True


class Reader:
    """Issue collector and scalar constructor for one policy source."""

    def __init__(
        self, label: str, base_dir: Path | None = None, *, check_files: bool = False
    ) -> None:
        self.label = label
        self.base_dir = base_dir  # what paths in the source are relative to (None: stored text)
        # Whether those paths must name files (test samples): only where the tests run.
        self.check_files = check_files
        self.issues: list[PolicyIssue] = []
        # What refuses nothing where the policy filters mail (a test's unknown rule)
        # but is an issue for `check` and `test`, which read with check_files.
        self.warnings: list[PolicyIssue] = []
        self._prefixes: list[str] = []
        # The keys from the top, or from the named item (a rule, a test) read, down to
        # the value read (limits, max_message_bytes; when, size_over).
        self._keys: list[str] = []
        self._constructor = _Constructor()
        self._seen: set[int] = set()  # the nodes visited, by id: the tree holds them all
        self._nodes = 0  # visits of a node seen before (an aliased value's contents)
        self._depth = 0

    @contextmanager
    def nested(self, node: yaml.Node) -> Iterator[bool]:
        """One level deeper; yields False (after one issue) past :data:`MAX_NESTING`."""
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                self.error(node, f"nested more than {MAX_NESTING} levels deep")
                yield False
            else:
                yield True
        finally:
            self._depth -= 1

    def error(self, node: yaml.Node | None, message: str) -> None:
        self.issues.append(self._issue(node, message))

    def warn(self, node: yaml.Node | None, message: str, code: str = "") -> None:
        self.warnings.append(self._issue(node, message, code))

    def _issue(self, node: yaml.Node | None, message: str, code: str = "") -> PolicyIssue:
        text = "".join(self._prefixes) + message
        if node is None:
            return PolicyIssue(self.label, None, None, text, code)
        mark = node.start_mark
        return PolicyIssue(self.label, mark.line + 1, mark.column + 1, text, code)

    @contextmanager
    def prefixed(self, prefix: str) -> Iterator[None]:
        """Prefix every issue raised inside, e.g. with "rule 'name': "."""
        self._prefixes.append(prefix)
        try:
            yield
        finally:
            self._prefixes.pop()

    @contextmanager
    def keyed(self, key: str, node: yaml.Node) -> Iterator[None]:
        """Read the value of ``key``; a plain value's issues name its key path
        (``limits.max_message_bytes: expected ...``), which its line alone does not."""
        keys = self._keys
        keys.append(key)
        try:
            if isinstance(node, yaml.ScalarNode):
                with self.prefixed(".".join(keys) + ": "):
                    yield
            else:
                yield
        finally:
            keys.pop()

    @contextmanager
    def named_item(self, prefix: str) -> Iterator[None]:
        """Issues inside prefixed with the item's name ("rule 'r': "), then the key path
        below it (``rule 'r': when.size_over: ...``), not the path down to it."""
        keys, self._keys = self._keys, []
        try:
            with self.prefixed(prefix):
                yield
        finally:
            self._keys = keys

    def visit(self, node: yaml.Node) -> bool:
        """Count a node read again; False (after one issue) once aliases repeat too much.
        An alias is a copy of its anchor's node holding the same nodes, so its contents
        are read again; the copy itself is written out (``*a``) as any value is."""
        if id(node) not in self._seen:
            self._seen.add(id(node))
            return not self.too_large
        self._nodes += 1
        if self._nodes == MAX_NODES + 1:
            self.error(node, f"document too large: aliases repeat more than {MAX_NODES} "
                             "values (an alias bomb?)")
        return self._nodes <= MAX_NODES

    @property
    def too_large(self) -> bool:
        """Whether reading stopped at :data:`MAX_NODES` (after its one issue)."""
        return self._nodes > MAX_NODES

    def scalar(self, node: yaml.ScalarNode) -> object:
        """The Python value of a scalar under the safe schema (str, int, bool, None, ...);
        :data:`TOO_LARGE` for an integer past :data:`MAX_INTEGER` or a number past a
        float's range."""
        try:
            value = self._constructor.construct_object(node)
        except _TooLarge:
            return TOO_LARGE
        except (ConstructorError, ValueError):
            return _Unreadable()
        if isinstance(value, str) and not value.isascii() and SURROGATE.search(value):
            # "\ud83d\udcb0" (as json.dumps writes an emoji) is two escapes PyYAML
            # leaves apart: one character; a lone surrogate stays one (spec.text refuses it).
            value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        return value


SURROGATE = re.compile("[\ud800-\udfff]")


class _Unreadable:
    """A scalar the safe constructor refused (an unknown tag, a bad timestamp)."""


# Its own value so that a spec expecting a number says why, not "got an integer".
TOO_LARGE: Final = _Unreadable()


# PyYAML's names of the tokens a syntax error quotes, in the words of a policy's author.
_TOKEN_WORDS = {
    "'?'": "a key", "'<block mapping start>'": "a key", "'<block sequence start>'": "a list",
    "'-'": "a list item", "'<block end>'": "the end of a block",
    "<block end>": "the end of a block",
}
_TOKEN = re.compile("|".join(map(re.escape, sorted(_TOKEN_WORDS, key=len, reverse=True))))


def _issue_at(label: str, mark: yaml.Mark | None, message: str) -> PolicyIssue:
    if mark is None:
        return PolicyIssue(label, None, None, message)
    return PolicyIssue(label, mark.line + 1, mark.column + 1, message)


def _marked_issue(
    label: str, exc: yaml.MarkedYAMLError, restore: dict[int, int] | None = None,
    source: str = "",
) -> PolicyIssue:
    """Where and what, never PyYAML's own text: it quotes the line (which may hold a
    secret, in a settings file). ``restore`` maps stand-ins back to the characters
    they took the place of, which PyYAML's problem may quote ("but found '\\ue000'");
    ``source``: the text composed, for what is written before a problem's place."""
    mark = exc.problem_mark or exc.context_mark
    if exc.context == _SIMPLE_KEY and exc.context_mark is not None:
        mark = exc.context_mark  # the key's line, not the next one, where PyYAML gave up
    problem = exc.problem or exc.context or "invalid YAML"
    for stand_in, char in (restore or {}).items():
        problem = problem.replace(repr(chr(stand_in)), repr(chr(char)))
    if (exc.context, exc.problem) == _UNCLOSED_QUOTE and exc.context_mark is not None:
        # At the quote, not at the file's end, which is where PyYAML found it out.
        mark, problem = exc.context_mark, "this quoted value is not closed before the file ends"
        if source[mark.index:mark.index + 1] == "'":  # 'it's
            problem += " (in single quotes, write ' as '', as in 'it''s')"
    if (hidden := _closer_in_comment(exc, source)) is not None:
        # At the comment, not at the next line's value, where PyYAML found it out.
        (opener, line), comment = hidden
        return PolicyIssue(label, *place(source, comment),
                           f"YAML syntax error: the {opener} at line {line} is not closed: its "
                           f"{_CLOSERS[opener]} is in the comment that ' #' starts here (quote "
                           "a value that holds #, as in 'Ticket #12', or write the comment "
                           f"after the {_CLOSERS[opener]})")
    if (unclosed := _never_closed(exc, source)) is not None:
        # At the bracket, not at the next key or the file's end, where PyYAML found it out.
        opener, until = unclosed
        return _issue_at(label, exc.context_mark, f"YAML syntax error: this {opener} is not "
                         f"closed before {until} (close it with {_CLOSERS[opener]})")
    if exc.context and exc.context.startswith("expected"):  # "expected a single document"
        problem = f"{exc.context}, {problem}"
    if exc.problem == _ANCHOR_AGAIN and exc.context and exc.context_mark is not None:
        # PyYAML's problem alone is "second occurrence"; its context says of what.
        problem = (f"{exc.context.split(';')[0]} (first at line {exc.context_mark.line + 1}): "
                   "give each anchor its own name")
    hint = _hint(exc, source)
    if "<block end>" in problem:  # a line indented less, or more, than its block's
        worded = _TOKEN.sub(lambda token: _TOKEN_WORDS[token[0]], problem)
        problem = worded if hint else f"{worded} (check this line's indentation)"
    if not isinstance(exc, _TooLarge | _Directive):  # well-formed YAML we refuse
        problem = f"YAML syntax error: {problem}{hint}"
    return _issue_at(label, mark, problem)


_UNCLOSED_QUOTE = ("while scanning a quoted scalar", "found unexpected end of stream")
_CLOSERS = {"[": "]", "{": "}"}
# In [ ] and { }: a quoted value (skipped whole), a comment (" #" to the line's end),
# or any other character. A quote starts a value only where a value starts.
_FLOW_PIECE = re.compile(r"""(?<![^\[{,:\s])(?:"(?:[^"\\]|\\.)*"|'(?:[^']|'')*')"""
                         r"|(?<![^\s])(#[^\r\n]*)|.", re.S)
_ANCHOR_AGAIN = "second occurrence"  # of an anchor: "found duplicate anchor 'a'; first ..."
_ALIAS_ERRORS = ("while scanning an alias", "while scanning an anchor")
_RESERVED_START = re.compile(r"found character '[@`%]' that cannot start any token")
_FLOW_COLON = "expected the node content, but found ':'"
_KEY_IN_VALUE = "mapping values are not allowed here"
_TAB_START = "found character '\\t' that cannot start any token"
_NO_DOCUMENT_START = "expected '<document start>'"
_QUOTE_VALUE = " (': ' in a value starts a key: quote the value, as in 'Rejected: spam')"
# PyYAML's problem, and what the author most likely meant.
_HINTS = {
    _KEY_IN_VALUE: _QUOTE_VALUE,  # message: Rejected: spam
    "expected ',' or '}', but got ':'": _QUOTE_VALUE,  # when: {subject: Re: hi}
    _TAB_START: " (a tab: indent with spaces)",  # which YAML never takes
    # Files joined with "---" between them, or one a tool ended with "---".
    "but found another document": " (a file holds one YAML document: remove this --- line, "
                                  "or move what follows it into a file of its own)",
    # An IPv6 address: client_ip: [127.0.0.1, ::1]
    _FLOW_COLON: " (in [ ] or { } a value that starts with : is not read as one: quote it, "
                 "as in '::1')",
    "sequence entries are not allowed here": " (a value that starts with '- ' is read as a "
                                             "list item: quote it, as in '- sale')",
    "mapping keys are not allowed here": " (a value that starts with '? ' is read as a key: "
                                         "quote it)",
}
# The context of a problem, and what the author most likely meant.
_SIMPLE_KEY = "while scanning a simple key"  # a key with no ':' after it on its line
_CONTEXT_HINTS = {
    _SIMPLE_KEY: " (a key on this line: write it as key: value, with a space after the ':')",
    "while scanning a block scalar": " (| and > start text written on the lines below: "
                                     "quote a value that starts with them, as in '> 5')",
    # body: "\d+", a pattern written as it is in Python or grep
    "while scanning a double-quoted scalar": " (in double quotes \\ starts an escape: write "
                                             "a pattern in single quotes, as in '\\d+')",
}


def _hint(exc: yaml.MarkedYAMLError, source: str) -> str:
    """What the author most likely meant, where PyYAML's words do not say it: a glob
    (``filename: *.exe``) is read as an alias, the commonest mistake in a policy file."""
    closed = _closed_before(exc, source)
    if closed in ("]", "}"):  # subject: [SPAM] offer
        return (" (a value that starts with [ or { is read as a list or a mapping, which "
                f"ends at its {closed}: quote the whole value, as in '[SPAM] offer', or "
                "'\\[SPAM\\] offer' for a pattern, where [SPAM] is a class of one letter)")
    if closed:  # message: "Rejected" by policy
        return " (a quoted value ends at its closing quote: quote the whole value)"
    if later := _anchor_after(exc, source):  # x-common: at the end of the file
        return (f" (its anchor {later[0]} comes later, at line {later[1]}: an anchor must be "
                "written before its aliases)")
    if exc.context in _ALIAS_ERRORS or (exc.problem or "").startswith("found undefined alias"):
        return (" (a value that starts with * is read as a YAML alias, one with & as an "
                "anchor: quote it, as in '*.exe')")
    if _RESERVED_START.match(exc.problem or ""):
        return " (@, ` and % cannot start a YAML value: quote it)"
    if (exc.problem or "").startswith(_NO_DOCUMENT_START):
        return " (after a %YAML or %TAG line, or a ... line, a document starts with ---)"
    if exc.problem == _KEY_IN_VALUE and _first_on_line(exc.problem_mark, source):
        return (" (YAML reads this line as more of the value above it: check its "
                "indentation, and that the key above has its ':')")
    return _HINTS.get(exc.problem or "") or _CONTEXT_HINTS.get(exc.context or "", "")


_KEY_ALONE = re.compile(r"[ \t]*(?:-[ \t]+)?[^\s:#]*")  # a list item's "- " may start it


def _first_on_line(mark: yaml.Mark | None, source: str) -> bool:
    """Whether at most a key, first on its line, is before ``mark`` (a ':', a key): a
    key the author meant as such, which YAML read as the end of a value above it (a
    line indented too deep, a key above without its ':', a bracket left open)."""
    return mark is not None and bool(_KEY_ALONE.fullmatch(source, mark.index - mark.column,
                                                          mark.index))


def _closer_in_comment(
    exc: yaml.MarkedYAMLError, source: str
) -> tuple[tuple[str, int], int] | None:
    """A [ or { not closed because a comment on its lines holds its ] or }
    (``notify: [ops #oncall]``): the bracket and its line, and where the comment starts."""
    start, end = exc.context_mark, exc.problem_mark
    if not (exc.context or "").startswith("while parsing a flow") or start is None or end is None:
        return None
    opener = source[start.index:start.index + 1]
    if opener not in _CLOSERS:
        return None
    # Only the comments with nothing but blanks (and comments) after them: what PyYAML
    # found instead of the closer came next (a ] in a comment before more of the list,
    # "# see [docs]", is no hidden closer).
    pieces = _FLOW_PIECE.finditer(source, start.index + 1, end.index)
    after, hiding = end.index, None
    for comment in reversed([piece for piece in pieces if piece[1] is not None]):
        if source[comment.end():after].strip():
            break
        after = comment.start()
        if _CLOSERS[opener] in comment[1]:
            hiding = comment.start()
    return None if hiding is None else ((opener, start.line + 1), hiding)


# PyYAML's problem where a [ or { goes on past its end: what came instead of a , or closer.
_FLOW_GOES_ON = re.compile(r"expected ',' or '[\]}]', but got .+")


def _never_closed(exc: yaml.MarkedYAMLError, source: str) -> tuple[str, str] | None:
    """A [ or { whose closer was left out (``when: {subject: a`` then ``then: accept``):
    the bracket, and "the file ends" or "line N" where the block it is in goes on (a
    line indented no deeper than the bracket's own: no continuation of it)."""
    start, end = exc.context_mark, exc.problem_mark
    if start is None or end is None or not _FLOW_GOES_ON.fullmatch(exc.problem or ""):
        return None
    opener = source[start.index:start.index + 1]
    if opener not in _CLOSERS:
        return None
    if (exc.problem or "").endswith("'<stream end>'"):
        return opener, "the file ends"
    if (end.line > start.line and _indent(source, end) <= _indent(source, start)
            and _first_on_line(end, source)):
        return opener, f"line {end.line + 1}"
    return None


def _indent(source: str, mark: yaml.Mark) -> int:
    """The indentation of the line ``mark`` is on (a list item's "- " counts as such)."""
    line_start = mark.index - mark.column
    line = source[line_start:mark.index]
    return len(line) - len(line.lstrip(" -"))


_UNDEFINED_ALIAS = re.compile(r"found undefined alias '(.+)'")


def _anchor_after(exc: yaml.MarkedYAMLError, source: str) -> tuple[str, int] | None:
    """An undefined alias's anchor (``&name``) and its line, when written after it."""
    found = _UNDEFINED_ALIAS.fullmatch(exc.problem or "")
    if found is None or exc.problem_mark is None:
        return None
    anchor = re.compile(rf"&{re.escape(found[1])}(?=[\s,\[\]{{}}]|\Z)")
    later = anchor.search(source, exc.problem_mark.index)
    return None if later is None else (later[0], place(source, later.start())[0])


# Text where a value has ended (a list, a mapping, a quoted value): another value.
_MORE_AFTER_VALUE = ("expected <block end>, but found '<scalar>'",
                     "expected ',' or '}', but got '<scalar>'",
                     "expected ',' or ']', but got '<scalar>'")


def _closed_before(exc: yaml.MarkedYAMLError, source: str) -> str:
    """The ], }, " or ' just before the text a problem is about, on its line (the end of
    a value that text should have been part of); "" for none."""
    mark = exc.problem_mark
    if exc.problem not in _MORE_AFTER_VALUE or mark is None:
        return ""
    end = mark.index
    while end > 0 and source[end - 1] in " \t":
        end -= 1
    return source[end - 1] if end > 0 and source[end - 1] in "]}\"'" else ""


# A line end as YAML reads one: a lone CR (old Mac line ends) too, in text as sent (an
# upload; a file is read with its line ends made LF).
_LINE_END = re.compile(r"\r\n?|\n")


def place(text: str, position: int) -> tuple[int, int]:
    """Line and column (1-based) of ``text[position]``, lines counted as YAML counts them."""
    line_start = max(text.rfind("\n", 0, position), text.rfind("\r", 0, position)) + 1
    return len(_LINE_END.findall(text, 0, position)) + 1, position - line_start + 1


WIDE_WITHOUT_BOM = ("cannot read: UTF-16 or UTF-32 text without a byte order mark (a NUL "
                    "among its first characters): save it as UTF-8")


def _character_issue(label: str, text: str, exc: yaml.reader.ReaderError) -> PolicyIssue:
    """A character YAML refuses, placed by line and column (PyYAML tells an offset)."""
    code = ord(exc.character) if isinstance(exc.character, str) else exc.character
    if code == 0 and "\x00" in text[:2]:  # YAML's own test (1.2, 5.2): text starts in ASCII
        return PolicyIssue(label, 1, 1, WIDE_WITHOUT_BOM)
    if 0xD800 <= code <= 0xDFFF:
        kind = "a lone surrogate"
    elif code < 0x20 or 0x7F <= code < 0xA0:
        kind = "a control character: YAML takes tab and line ends only"
    else:
        kind = "a noncharacter"
    return PolicyIssue(label, *place(text, exc.position),
                       f"YAML syntax error: character U+{code:04X} is not allowed ({kind})")


# YAML 1.1's line breaks (PyYAML's, libyaml's) include NEL, LS and PS. YAML 1.2 reads
# them as text, and editors, git and grep count lines by LF: while a source is
# composed they are swapped for private-use characters it does not hold (same length,
# so marks keep their place), swapped back in every scalar. A source holding almost
# every private-use character keeps YAML 1.1's reading of those left without one.
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")
_ESCAPED = re.compile(r"\\(?:u|U0000)([eEfF][0-9a-fA-F]{3})")


def _stand_ins(text: str) -> dict[int, int]:
    """Each YAML 1.1-only line break in ``text`` (by code point) to the code point of a
    private-use character ``text`` does not hold."""
    breaks = [ord(char) for char in _YAML11_BREAKS if char in text]
    if not breaks:
        return {}
    used = {ord(char) for char in _PRIVATE_USE.findall(text)}
    # And those a double-quoted escape writes (\ue000, \U0000E000): there after scanning.
    used |= {int(code, 16) for code in _ESCAPED.findall(text)}
    free = (code for code in range(0xE000, 0xF900) if code not in used)
    return dict(zip(breaks, free, strict=False))  # fewer when almost all are used


class _NestedTooDeeply(Exception):
    """PyYAML's composer recursed past Python's limit (once per level of [ or {)."""

    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__("YAML nested too deeply")
        self.mark = mark


class _Directive(yaml.MarkedYAMLError):
    """A directive this reader does not follow (%YAML other than 1.2, an unknown one)."""


# A directive line (at a line's start, or after the byte order mark): its name and value.
_DIRECTIVE = re.compile(r"(?<![^\r\n\ufeff])%(\S+)[ \t]*([^\s#]*)")
_INCOMPATIBLE = "found incompatible YAML document (version 1.* is required)"
YAML_VERSION = "1.2"


def _check_directives(text: str, start: int, end: int) -> None:
    """Refuse a %YAML directive other than 1.2, and a directive YAML does not define;
    %TAG only names tags (which a policy reads as any other). Policies are read as
    YAML 1.2 whatever the file says: read silently as 1.2, a file declaring 1.1
    would not mean what its author wrote (010, yes)."""
    for found in _DIRECTIVE.finditer(text, start, end):
        problem = _directive_problem(found[1], found[2])
        if problem is not None:
            line, _ = place(text, found.start(1))  # column 1: a byte order mark is none
            mark = yaml.Mark("", found.start(1) - 1, line - 1, 0, None, 0)
            raise _Directive(None, None, problem, mark)


def _directive_problem(name: str, value: str) -> str | None:
    if name == "TAG" or (name == "YAML" and value == YAML_VERSION):
        return None
    if name != "YAML":
        return f"unknown directive %{name}: YAML defines %YAML and %TAG only"
    differs = (" (YAML 1.1 reads 010 as eight and yes, no, on and off as booleans)"
               if value == "1.1" else "")
    return (f"%YAML {value}: postwarden reads YAML {YAML_VERSION} only{differs}: "
            f"write %YAML {YAML_VERSION} or remove the line")


def _composed(
    loader_type: type[_PlacingAliases], text: str, restore: dict[int, int]
) -> yaml.Node | None:
    """The one document of ``text`` (None: empty), each scalar's stand-ins put back."""
    loader = loader_type(text)  # type: ignore[call-arg]
    loader.restore = restore
    loader.source = text
    events = cast(Parser, loader)
    try:
        node = loader.get_single_node()
    except yaml.parser.ParserError as exc:  # %YAML 2.0: said as of any other version
        if exc.problem == _INCOMPATIBLE and exc.problem_mark is not None:
            _check_directives(text, exc.problem_mark.index, len(text))
        raise
    except RecursionError:  # placed where the parser stopped, the deepest bracket read
        raise _NestedTooDeeply(events.peek_event().start_mark) from None  # type: ignore[no-untyped-call]
    finally:
        events.dispose()
    if loader.directives is not None:
        _check_directives(text, *loader.directives)
    return node


def compose(label: str, text: str) -> tuple[yaml.Node | None, list[PolicyIssue]]:
    """Compose one YAML document into nodes; a syntax error becomes an issue."""
    if len(text) > MAX_SOURCE_CHARS:
        return None, [PolicyIssue(label, None, None, f"larger than {MAX_SOURCE_CHARS} characters")]
    stand_ins = _stand_ins(text)
    source = text.translate(stand_ins)
    restore = {stand_in: char for char, stand_in in stand_ins.items()}
    try:
        try:
            node = _composed(_Loader, source, restore)
        except (yaml.YAMLError, UnicodeEncodeError):  # a lone surrogate does not encode
            node = _composed(_ExplainingLoader, source, restore)
    except yaml.MarkedYAMLError as exc:
        return None, [_marked_issue(label, exc, restore, source)]
    except yaml.reader.ReaderError as exc:
        return None, [_character_issue(label, text, exc)]
    except yaml.YAMLError as exc:
        return None, [PolicyIssue(label, None, None, f"YAML error: {exc}")]
    except _NestedTooDeeply as exc:
        return None, [_issue_at(label, exc.mark, str(exc))]
    return node, []


def construct(label: str, node: yaml.Node) -> tuple[object, list[PolicyIssue]]:
    """The plain Python value of a composed document, integers read as YAML 1.2 writes
    them: for files with no per-node checks (process settings)."""
    try:
        return _Constructor().construct_document(node), []
    except yaml.MarkedYAMLError as exc:  # a tag no safe constructor knows, ...
        return None, [_marked_issue(label, exc)]


def read_plain(label: str, text: str) -> tuple[yaml.Node | None, object, list[PolicyIssue]]:
    """:func:`compose`, then :func:`construct`: the document's nodes (for their marks),
    its plain value (None for an empty document), and the issues of either step."""
    node, issues = compose(label, text)
    if node is None or issues:
        return node, None, issues
    value, issues = construct(label, node)
    return node, value, issues
