"""A small declarative schema language: one description drives both validation and JSON Schema.

Each :class:`Spec` reads a YAML node into a value (reporting issues at node
marks through a :class:`~postwarden_policies.yamlnodes.Reader`) and describes
itself as JSON Schema (draft 2020-12). This module holds the base, the scalars
and the combinators (conversion, lists, alternatives, recursion); the specs of
mappings are in :mod:`.mappingspecs`. ``policyformat`` uses these pieces to
describe the policy file format once.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import yaml

from .errors import COMMENT_AFTER_VALUE, SHOWN_CHARS, likely_meant, shown
from .yamlnodes import (
    INTEGER_TOO_LARGE,
    MAX_INTEGER,
    SURROGATE,
    TOO_LARGE,
    YAML11_BOOLEANS,
    Reader,
    bounded_int,
    bracketed_texts,
    comment_after,
    describe,
)

JsonSchema = dict[str, Any]


class Invalid:
    """Marks a value that did not read; its issue is already recorded."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Final = Invalid()


class SpecError(ValueError):
    """Raised by conversion functions; the message becomes a policy issue at the node."""


class Spec(ABC):
    """Reads one YAML node and describes itself as JSON Schema."""

    @abstractmethod
    def read(self, node: yaml.Node, reader: Reader) -> Any:
        """The value, or INVALID after recording at least one issue."""

    @abstractmethod
    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        """This spec as JSON Schema; named object specs register themselves in ``defs``."""


def whole_number(node: yaml.ScalarNode, value: object) -> object:
    """A number written with a fraction or an exponent (``1.0``, ``1e3``) that is a whole
    number, as the integer it is, as JSON Schema's "integer" takes it (so that what an
    editor passes loads), or TOO_LARGE past MAX_INTEGER; any other value as it is. Judged
    on the text written, not on the float it reads as: ``1e-400`` (0.0) and
    ``1.0000000000000000001`` (1.0) are no integers, ``-1e400`` is one, negative."""
    if type(value) is not float and value is not TOO_LARGE:
        return value
    try:
        exact = Decimal(node.value)
    except ArithmeticError:  # .inf, .nan, 0x8000000000000000
        return value
    # Its digits alone, no arithmetic: the context's precision would round, or overflow
    # on a source's millions of digits.
    _, digits, exponent = exact.as_tuple()
    if not isinstance(exponent, int) or (exponent < 0 and any(digits[exponent:])):
        return value  # infinite, or with a fraction
    if not any(digits):
        return 0
    if exact.adjusted() >= len(str(MAX_INTEGER)):  # 10**19 and past
        return TOO_LARGE
    return int(exact) if abs(int(exact)) <= MAX_INTEGER else TOO_LARGE


def written(node: yaml.ScalarNode) -> str:
    """A scalar's text as its author wrote it, unquoted; cut past SHOWN_CHARS."""
    if len(node.value) <= SHOWN_CHARS:
        return str(node.value)
    return f"{node.value[:SHOWN_CHARS]}... ({len(node.value)} characters)"


def got(node: yaml.Node, value: object) -> str:
    """What an issue says a value read from ``node`` is: a number as written (``1.5``,
    ``600``, ``-1``: "an integer" says nothing of what is wrong with it), a string quoted
    (``'lots'``, ``'10 MB'``: nor does "a string", where a string may be right), else its
    kind."""
    if isinstance(node, yaml.ScalarNode) and (type(value) in (int, float) or value is TOO_LARGE):
        return written(node)
    if isinstance(node, yaml.ScalarNode) and type(value) is str:
        return f"the string {shown(value)}"
    return describe(node)


def _flow_list_hint(node: yaml.Node) -> str:
    """What to say of text written in brackets, unquoted (``subject_prefix: [EXT]``),
    which YAML reads as a list of what the brackets hold; else ""."""
    if (texts := bracketed_texts(node)) is None:
        return ""
    text = "[" + ", ".join(texts) + "]"
    return f" (YAML reads {text} unquoted as a list: quote it, as in {shown(text)})"


def negative(node: yaml.Node) -> bool:
    """Whether a scalar is written as a negative number (-1e400: past the range, below it)."""
    return isinstance(node, yaml.ScalarNode) and node.value.lstrip().startswith("-")


class Scalar(Spec):
    """A scalar of one Python type, optionally constrained by a check."""

    def __init__(
        self,
        python_type: type,
        json_type: str,
        expected: str,
        *,
        check: Callable[[Any], None] | None = None,
        extra: JsonSchema | None = None,
    ) -> None:
        self.python_type = python_type
        self.json_type = json_type
        self.expected = expected
        self.check = check
        self.extra = extra or {}

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            hint = _flow_list_hint(node) if self.python_type is str else ""
            reader.error(node, f"expected {self.expected}, got {describe(node)}{hint}")
            return INVALID
        return self.take(node, reader.scalar(node), reader)

    def take(self, node: yaml.ScalarNode, value: object, reader: Reader) -> Any:
        """The scalar's value read (once: a value that did not read reads as another
        the next time), checked."""
        if self.python_type is int:
            value = whole_number(node, value)
            if (below := self._below_minimum(node, value)) is not None:
                reader.error(node, below)
                return INVALID
        if self.python_type is bool and isinstance(value, str) and value in YAML11_BOOLEANS:
            value = YAML11_BOOLEANS[value]
        if value is TOO_LARGE and self.python_type is int and not negative(node):
            reader.error(node, f"{INTEGER_TOO_LARGE}, got {written(node)}")
            return INVALID
        if type(value) is not self.python_type:
            if self.python_type is str and node.value:  # quoting nothing gives ""
                reader.error(node, f"expected {self.expected}, got {describe(node)} "
                                   "(quote it to make it a string)")
            else:
                reader.error(node, f"expected {self.expected}, got {got(node, value)}"
                                   f"{self._quoted_hint(node, value)}")
            return INVALID
        if isinstance(value, str):
            _tell_comment_after(node, value, reader)
        if self.check is not None:
            try:
                self.check(value)
            except SpecError as exc:
                reader.error(node, str(exc))
                return INVALID
        return value

    def _below_minimum(self, node: yaml.ScalarNode, value: object) -> str | None:
        """What to say of an integer ``value`` below the least this spec takes; None
        for one it takes (any, but in :class:`Integer`)."""
        return None

    def _quoted_hint(self, node: yaml.ScalarNode, value: object) -> str:
        """What to say of a quoted value that, unquoted, would be what is expected
        (``priority: '10'``, ``authenticated: "false"``); else ""."""
        written_as = _UNQUOTED.get(self.python_type)
        if not (node.style and isinstance(value, str) and written_as
                and written_as.fullmatch(value)):
            return ""
        return f" (quoted, it is text: write {value} without quotes)"

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        if self.python_type is bool:  # the YAML 1.1 words read() takes too, as text
            return {"anyOf": [{"type": "boolean"}, {"enum": list(YAML11_BOOLEANS)}],
                    **self.extra}
        return {"type": self.json_type, **self.extra}


# How an integer or a boolean is written unquoted, as YAML 1.2 reads one (yamlnodes).
_UNQUOTED = {int: re.compile(r"[-+]?[0-9]+"), bool: re.compile(r"true|True|TRUE|false|False|FALSE")}


def _tell_comment_after(node: yaml.ScalarNode, value: str, reader: Reader) -> None:
    """A warning, not an issue: the value may be whole and the comment meant as one."""
    if (comment := comment_after(node)) is not None:
        end = value if len(value) <= 40 else f"...{value[-37:]}"  # a long text: its end
        reader.warn(node, f"{end!r} ends where {comment!r} starts a YAML comment: quote "
                          f"the whole value if {comment} belongs to it (write a comment as "
                          "'# ...')", code=COMMENT_AFTER_VALUE)


# A "\ud800" escape makes a lone surrogate, which is no character: UTF-8 cannot hold
# it, so no pattern would compile with it nor header be written. Where text stands
# for bytes (a test's raw message), \udc80 to \udcff stand for the bytes 0x80 to
# 0xff, as Python's surrogateescape reads them.
_NOT_A_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def text(*, pattern: str | None = None, what: str = "text", max_length: int = 1000,
         byte_escapes: bool = False, schema_pattern: str | None = None,
         hint: Callable[[str], str] = lambda _: "") -> Scalar:
    """A non-empty string, optionally matching ``pattern`` (described as ``what``);
    ``byte_escapes``: \\udc80 to \\udcff may stand for the bytes 0x80 to 0xff;
    ``schema_pattern``: a stricter one the JSON Schema gives an editor instead;
    ``hint``: what to add of a value that does not match (" (...)" or "")."""
    compiled = re.compile(pattern) if pattern else None
    surrogate = _NOT_A_BYTE if byte_escapes else SURROGATE

    def check(value: str) -> None:
        if not value:
            raise SpecError(f"expected {what}, got an empty string")
        if len(value) > max_length:
            raise SpecError(f"too long: at most {max_length} characters")
        if found := surrogate.search(value):
            allowed = ", only \\udc80 to \\udcff (the bytes 0x80 to 0xff)" if byte_escapes else ""
            raise SpecError(f"holds \\u{ord(found.group()):04x}, a lone surrogate: no "
                            f"character{allowed}")
        if compiled is not None and not compiled.fullmatch(value):
            told = hint(value) or _line_end_hint(compiled, value)
            raise SpecError(f"expected {what}, got {shown(value)}{told}")

    extra: JsonSchema = {"minLength": 1, "maxLength": max_length}
    if schema_pattern or pattern:
        extra["pattern"] = f"^(?:{schema_pattern or pattern})$"
    return Scalar(str, "string", "a string", check=check, extra=extra)


def _line_end_hint(compiled: re.Pattern[str], value: str) -> str:
    """What to say of a value refused for the line break at its end only: what a YAML
    block (message: |, the text below) keeps."""
    if value.endswith("\n") and compiled.fullmatch(value[:-1]):
        return (" (but for the line break at its end, which a block, | or >, keeps: "
                "write |- or >-)")
    return ""


def caseless_except(words: Iterable[str], pattern: str) -> str:
    """A ``schema_pattern``: ``pattern`` but none of ``words`` in any case (JSON Schema's
    patterns take no flags). Words of letters, digits and "-" only, which need no escape
    in ECMAScript's unicode mode, as editors compile patterns."""
    def caseless(word: str) -> str:
        assert re.fullmatch(r"[A-Za-z0-9-]+", word), word  # noqa: S101 - a programming error
        return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)

    return f"(?!(?:{'|'.join(sorted(map(caseless, words)))})$)(?:{pattern})"


class Integer(Scalar):
    """An integer of at least ``minimum``; ``zero``: why 0 is refused, as Size's. One
    below is told as written, -1e400 too (past the range, but below it)."""

    def __init__(self, *, minimum: int = 0, zero: str | None = None) -> None:
        def check(value: int) -> None:
            if value == 0 and zero is not None:
                raise SpecError(zero)

        super().__init__(int, "integer", "an integer", check=check,
                         extra={"minimum": minimum, "maximum": MAX_INTEGER})
        self.minimum = minimum
        self.zero = zero

    def _below_minimum(self, node: yaml.ScalarNode, value: object) -> str | None:
        if value == 0 and self.zero is not None:
            return None  # told by the check, as zero is
        below = (type(value) is int and value < self.minimum) or (
            value is TOO_LARGE and negative(node))
        return f"expected an integer of at least {self.minimum}, got {got(node, value)}" \
            if below else None


def integer(*, minimum: int = 0, zero: str | None = None) -> Integer:
    """An integer of at least ``minimum``; ``zero``: why 0 is refused, as Size's."""
    return Integer(minimum=minimum, zero=zero)


def boolean() -> Scalar:
    return Scalar(bool, "boolean", "true or false")


def choice(*values: str, hints: Mapping[str, str] | None = None) -> Scalar:
    """One of ``values``; ``hints``: what to say of a value refused that an author is
    likely to write there (one allowed elsewhere), by the value in lower case."""
    allowed = ", ".join(values)

    def check(value: str) -> None:
        if value not in values:
            hint = (hints or {}).get(value.lower())
            raise SpecError(f"expected one of {allowed}; got {shown(value)}"
                            + (f" ({hint})" if hint else likely_meant(value, values)))

    return Scalar(str, "string", f"one of {allowed}", check=check, extra={"enum": list(values)})


_SIZE = re.compile(r"([0-9]+)\s*([KMG]?)(?:i?B)?", re.IGNORECASE)  # ASCII digits only
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE_TOO_LARGE = f"size too large: at most {MAX_INTEGER} bytes"


def _size_bytes(found: re.Match[str]) -> object:
    """The bytes a matched size string means, or TOO_LARGE (as for an integer scalar)."""
    count = bounded_int(found.group(1))
    if count is None:
        return TOO_LARGE
    size = count * _SIZE_UNITS[found.group(2).lower()]
    return size if size <= MAX_INTEGER else TOO_LARGE


class Size(Spec):
    """A byte count: an integer, or a string such as "10MB" / "512 KiB" (binary units).
    ``zero``: why 0 is refused, where it would not mean what an author expects (Postfix's
    ``message_size_limit = 0`` is no limit, a policy's would refuse every message)."""

    def __init__(self, *, zero: str | None = None) -> None:
        self.zero = zero

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        value = read = (whole_number(node, reader.scalar(node))
                        if isinstance(node, yaml.ScalarNode) else None)
        if isinstance(read, str) and (found := _SIZE.fullmatch(read.strip())):
            value = _size_bytes(found)
        # -1e400 is past the range too, but below it: told as the negative size it is
        if value is TOO_LARGE and not negative(node):
            reader.error(node, f"{_SIZE_TOO_LARGE}, got {got(node, read)}")  # as an integer's
            return INVALID
        if type(value) is int and value == 0 and self.zero is not None:
            reader.error(node, self.zero)
            return INVALID
        if type(value) is int and value >= 0:
            return value
        reader.error(node, f'expected a size in bytes such as 1048576 or "1MB", got '
                           f"{got(node, value)}")
        return INVALID

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        # A pattern cannot compare a count with MAX_INTEGER // unit: it takes as many
        # digits as the largest count has (10 for G), and so some counts too large that
        # the loader refuses, never one it takes.
        counts = "|".join(
            f"[0-9]{{1,{len(str(MAX_INTEGER // factor))}}}\\s*{self._unit(unit)}"
            for unit, factor in _SIZE_UNITS.items()
        )
        suffix = "(?:[iI]?[bB])?\\s*$"
        # Zero in any unit ("0", "00 KiB") where it is refused.
        not_zero = f"(?!\\s*0+\\s*[kKmMgG]?{suffix})" if self.zero else ""
        return {
            "anyOf": [
                {"type": "integer", "minimum": 1 if self.zero else 0, "maximum": MAX_INTEGER},
                {"type": "string", "pattern": f"^{not_zero}\\s*0*(?:{counts}){suffix}"},
            ]
        }

    @staticmethod
    def _unit(unit: str) -> str:
        return f"[{unit}{unit.upper()}]" if unit else ""


class Convert(Spec):
    """Reads with ``inner`` then converts; a SpecError from ``convert`` is an issue at the node."""

    def __init__(self, inner: Spec, convert: Callable[[Any], Any], doc: str | None = None) -> None:
        self.inner = inner
        self.convert = convert
        self.doc = doc

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        value = self.inner.read(node, reader)
        if value is INVALID:
            return INVALID
        try:
            return self.convert(value)
        except SpecError as exc:
            reader.error(node, str(exc))
            return INVALID

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        inner = self.inner.schema(defs)
        return {**inner, "description": self.doc} if self.doc else inner


class ListOf(Spec):
    """A sequence of ``item`` (a lone scalar counts as a one-item list)."""

    def __init__(self, item: Spec, *, min_items: int = 1, single_ok: bool = True) -> None:
        self.item = item
        self.min_items = min_items
        self.single_ok = single_ok

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        items = self.read_each(node, reader)
        if items is None or any(value is INVALID for _, value in items):
            return INVALID
        return tuple(value for _, value in items)

    def read_each(self, node: yaml.Node, reader: Reader) -> list[tuple[yaml.Node, Any]] | None:
        """Each item's node and value (INVALID for one that did not read), or None after
        an issue with the list as a whole."""
        if self.single_ok and isinstance(node, yaml.ScalarNode):
            return [(node, self.item.read(node, reader))]  # visited as the value it is
        if not isinstance(node, yaml.SequenceNode):
            reader.error(node, f"expected a list, got {describe(node)}{self._dash_hint(node)}")
            return None
        nodes: Sequence[yaml.Node] = node.value
        if len(nodes) < self.min_items:
            reader.error(node, f"expected at least {self.min_items} item(s)")
            return None
        items = [(item, self.item.read(item, reader)) for item in nodes if reader.visit(item)]
        return items if len(items) == len(nodes) else None

    def _dash_hint(self, node: yaml.Node) -> str:
        """What to say of a mapping where a list of them goes (rules, tests, any, all):
        an item written without its '- '."""
        if self.single_ok or not isinstance(node, yaml.MappingNode):
            return ""
        return (" (each item of the list starts with '- ' before its first key; in flow "
                "style, [{...}, {...}])")

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        item = self.item.schema(defs)
        array = {"type": "array", "items": item, "minItems": self.min_items}
        return {"anyOf": [item, array]} if self.single_ok else array


class Either(Spec):
    """A scalar form and a mapping form of the same thing, chosen by the node's kind."""

    def __init__(self, scalar: Spec, mapping: Spec, expected: str) -> None:
        self.scalar = scalar
        self.mapping = mapping
        self.expected = expected

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self.scalar.read(node, reader)
        if isinstance(node, yaml.MappingNode):
            return self.mapping.read(node, reader)
        reader.error(node, f"expected {self.expected}, got {describe(node)}")
        return INVALID

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        return {"anyOf": [self.scalar.schema(defs), self.mapping.schema(defs)]}


class Lazy(Spec):
    """Refers to a spec defined later (recursive conditions)."""

    def __init__(self, target: Callable[[], Spec]) -> None:
        self.target = target

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        with reader.nested(node) as deeper:
            return self.target().read(node, reader) if deeper else INVALID

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        return self.target().schema(defs)
