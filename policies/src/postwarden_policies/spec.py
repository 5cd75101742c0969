"""A small declarative schema language: one description drives both validation and JSON Schema.

Each :class:`Spec` reads a YAML node into a value (reporting issues at node
marks through a :class:`~postwarden_policies.yamlnodes.Reader`) and describes
itself as JSON Schema (draft 2020-12). ``policyformat`` uses these pieces to
describe the policy file format once.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml

from .yamlnodes import (
    INTEGER_TOO_LARGE,
    MAX_INTEGER,
    SURROGATE,
    TOO_LARGE,
    YAML11_BOOLEANS,
    Reader,
    bounded_int,
    describe,
    placed,
)

JsonSchema = dict[str, Any]
MERGE_TAG = "tag:yaml.org,2002:merge"


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
            reader.error(node, f"expected {self.expected}, got {describe(node)}")
            return INVALID
        value = reader.scalar(node)
        if self.python_type is bool and isinstance(value, str) and value in YAML11_BOOLEANS:
            value = YAML11_BOOLEANS[value]
        if value is TOO_LARGE and self.python_type is int:
            reader.error(node, INTEGER_TOO_LARGE)
            return INVALID
        if type(value) is not self.python_type:
            hint = " (quote it to make it a string)" if self.python_type is str else ""
            reader.error(node, f"expected {self.expected}, got {describe(node)}{hint}")
            return INVALID
        if self.check is not None:
            try:
                self.check(value)
            except SpecError as exc:
                reader.error(node, str(exc))
                return INVALID
        return value

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        if self.python_type is bool:  # the YAML 1.1 words read() takes too, as text
            return {"anyOf": [{"type": "boolean"}, {"enum": list(YAML11_BOOLEANS)}],
                    **self.extra}
        return {"type": self.json_type, **self.extra}


# A "\ud800" escape makes a lone surrogate, which is no character: UTF-8 cannot hold
# it, so no pattern would compile with it nor header be written. Where text stands
# for bytes (a test's raw message), \udc80 to \udcff stand for the bytes 0x80 to
# 0xff, as Python's surrogateescape reads them.
_NOT_A_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def text(*, pattern: str | None = None, what: str = "text", max_length: int = 1000,
         byte_escapes: bool = False, schema_pattern: str | None = None) -> Scalar:
    """A non-empty string, optionally matching ``pattern`` (described as ``what``);
    ``byte_escapes``: \\udc80 to \\udcff may stand for the bytes 0x80 to 0xff;
    ``schema_pattern``: a stricter one the JSON Schema gives an editor instead."""
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
            raise SpecError(f"expected {what}, got {value!r}")

    extra: JsonSchema = {"minLength": 1, "maxLength": max_length}
    if schema_pattern or pattern:
        extra["pattern"] = f"^(?:{schema_pattern or pattern})$"
    return Scalar(str, "string", "a string", check=check, extra=extra)


def integer(*, minimum: int = 0) -> Scalar:
    def check(value: int) -> None:
        if value < minimum:
            raise SpecError(f"expected an integer of at least {minimum}, got {value}")

    extra = {"minimum": minimum, "maximum": MAX_INTEGER}
    return Scalar(int, "integer", "an integer", check=check, extra=extra)


def boolean() -> Scalar:
    return Scalar(bool, "boolean", "true or false")


def choice(*values: str) -> Scalar:
    allowed = ", ".join(values)

    def check(value: str) -> None:
        if value not in values:
            raise SpecError(f"expected one of {allowed}; got {value!r}")

    return Scalar(str, "string", f"one of {allowed}", check=check, extra={"enum": list(values)})


_SIZE = re.compile(r"(\d+)\s*([KMG]?)(?:i?B)?", re.IGNORECASE)
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
    """A byte count: an integer, or a string such as "10MB" / "512 KiB" (binary units)."""

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        value = reader.scalar(node) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, str) and (found := _SIZE.fullmatch(value.strip())):
            value = _size_bytes(found)
        if value is TOO_LARGE:
            reader.error(node, _SIZE_TOO_LARGE)
            return INVALID
        if type(value) is int and value >= 0:
            return value
        reader.error(
            node, f'expected a size in bytes such as 1048576 or "1MB", got {describe(node)}'
        )
        return INVALID

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        return {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER},
                {"type": "string", "pattern": r"^\s*\d+\s*([KMGkmg]?)([iI]?[bB])?\s*$"},
            ]
        }


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
        if self.single_ok and isinstance(node, yaml.ScalarNode):
            nodes: Sequence[yaml.Node] = [node]
        elif isinstance(node, yaml.SequenceNode):
            nodes = node.value
        else:
            reader.error(node, f"expected a list, got {describe(node)}")
            return INVALID
        if len(nodes) < self.min_items:
            reader.error(node, f"expected at least {self.min_items} item(s)")
            return INVALID
        values = [self.item.read(item, reader) for item in nodes if reader.visit(item)]
        if len(values) < len(nodes) or any(v is INVALID for v in values):
            return INVALID
        return tuple(values)

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        item = self.item.schema(defs)
        array = {"type": "array", "items": item, "minItems": self.min_items}
        return {"anyOf": [item, array]} if self.single_ok else array


def _mapping_items(
    node: yaml.Node, reader: Reader, what: str
) -> tuple[list[tuple[str, yaml.Node, yaml.Node]], bool] | None:
    """(key, key node, value node) of a mapping's string keys, and whether there was no
    duplicate among them. A duplicate is an issue, and the other keys are still read,
    to tell their issues at the same time; a key that is no string (a merge key too)
    leaves the mapping's meaning unknown: None, once each such key is told."""
    if not isinstance(node, yaml.MappingNode):
        reader.error(node, f"expected a mapping ({what}), got {describe(node)}")
        return None
    items: list[tuple[str, yaml.Node, yaml.Node]] = []
    seen: dict[str, yaml.Node] = {}
    ok = strings = True
    for key_node, value_node in node.value:
        if not reader.visit(value_node):
            return None
        key = reader.scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
        if key_node.tag == MERGE_TAG:
            reader.error(key_node, "YAML merge keys (<<) are not supported: alias the whole "
                                   "value, or write its keys out")
            strings = False
            continue
        if not isinstance(key, str):
            reader.error(key_node, f"expected a string key, got {describe(key_node)}")
            strings = False
            continue
        lowered = key.lower()
        if lowered in seen:
            first = seen[lowered].start_mark.line + 1
            reader.error(key_node, f"duplicate key {key!r} (first defined at line {first})")
            ok = False
            continue
        seen[lowered] = key_node
        items.append((key, key_node, value_node))
    return (items, ok) if strings else None


class MapOf(Spec):
    """A mapping from ``key`` strings to ``value`` (keys compared case-insensitively)."""

    def __init__(self, key: Spec, value: Spec, what: str, *, min_items: int = 1) -> None:
        self.key = key
        self.value = value
        self.what = what
        self.min_items = min_items

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        read = _mapping_items(node, reader, self.what)
        if read is None:
            return INVALID
        items, ok = read
        if ok and len(items) < self.min_items:
            reader.error(node, f"expected at least {self.min_items} entry in {self.what}")
            return INVALID
        result: dict[Any, Any] = {}
        for _, key_node, value_node in items:
            key = self.key.read(key_node, reader)
            value = self.value.read(value_node, reader)
            if key is INVALID or value is INVALID:
                ok = False
            else:
                result[key] = value
        return result if ok else INVALID

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        return {
            "type": "object",
            "propertyNames": self.key.schema(defs),
            "additionalProperties": self.value.schema(defs),
            "minProperties": self.min_items,
        }


@dataclass(frozen=True)
class Field:
    spec: Spec
    doc: str
    required: bool = False
    default: Any = None


class ObjectContext:
    """What a build function may use: the nodes of the fields, to report issues at."""

    def __init__(self, node: yaml.Node, fields: Mapping[str, yaml.Node], reader: Reader) -> None:
        self.node = node
        self.fields = fields
        self.reader = reader

    def _node(self, key: str | None) -> yaml.Node:
        # A field of an aliased object is reported at the alias, not at the anchor.
        return placed(self.fields.get(key, self.node), self.node) if key else self.node

    def error(self, key: str | None, message: str) -> None:
        self.reader.error(self._node(key), message)

    def where(self, key: str | None = None) -> tuple[int, int]:
        """Line and column (1-based) of a field's value, or of the object itself."""
        mark = self._node(key).start_mark
        return mark.line + 1, mark.column + 1


Builder = Callable[[dict[str, Any], ObjectContext], Any]


class Obj(Spec):
    """A mapping with known keys; ``build`` turns the read values into a model object.

    With ``label_key`` every issue inside is prefixed with "<title> '<label>': ".
    With ``def_name`` the JSON Schema puts it under ``$defs`` (needed for recursion).
    """

    def __init__(
        self,
        title: str,
        doc: str,
        fields: Mapping[str, Field],
        build: Builder,
        *,
        def_name: str | None = None,
        label_key: str | None = None,
    ) -> None:
        self.title = title
        self.doc = doc
        self.fields = dict(fields)
        self.build = build
        self.def_name = def_name
        self.label_key = label_key

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        label = self._label(node, reader)
        if label is None:
            return self._read(node, reader)
        with reader.prefixed(f"{self.title} {label!r}: "):
            return self._read(node, reader)

    def _label(self, node: yaml.Node, reader: Reader) -> str | None:
        if self.label_key is None or not isinstance(node, yaml.MappingNode):
            return None
        for key_node, value_node in node.value:
            if getattr(key_node, "value", None) == self.label_key:
                value = (
                    reader.scalar(value_node) if isinstance(value_node, yaml.ScalarNode) else None
                )
                return value if isinstance(value, str) else None
        return None

    def _read(self, node: yaml.Node, reader: Reader) -> Any:
        read = _mapping_items(node, reader, self.title)
        if read is None:
            return INVALID
        items, whole = read
        value = self._read_items(node, items, reader)
        return value if whole else INVALID

    def _read_items(
        self, node: yaml.Node, items: list[tuple[str, yaml.Node, yaml.Node]], reader: Reader
    ) -> Any:
        values: dict[str, Any] = {}
        nodes: dict[str, yaml.Node] = {}
        ok = True
        for key, key_node, value_node in items:
            field = self.fields.get(key)
            if field is None:
                expected = ", ".join(self.fields)
                reader.error(
                    key_node, f"unknown key {key!r} in {self.title}; expected one of: {expected}"
                )
                ok = False
                continue
            nodes[key] = value_node
            value = field.spec.read(value_node, reader)
            ok = ok and value is not INVALID
            values[key] = value
        for key, field in self.fields.items():
            if key in values:
                continue
            if field.required:
                reader.error(node, f"missing required key {key!r} in {self.title}")
                ok = False
            elif field.default is not None:
                values[key] = field.default
        if not ok:
            return INVALID
        return self.build(values, ObjectContext(node, nodes, reader))

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        if self.def_name and self.def_name in defs:
            return {"$ref": f"#/$defs/{self.def_name}"}
        if self.def_name:
            defs[self.def_name] = {}  # reserve the name first: the object may refer to itself
        properties: JsonSchema = {}
        for key, field in self.fields.items():
            prop = {**field.spec.schema(defs), "description": field.doc}
            if field.default is not None and isinstance(field.default, str | int | bool):
                prop["default"] = field.default
            properties[key] = prop
        body: JsonSchema = {
            "type": "object",
            "description": self.doc,
            "properties": properties,
            "additionalProperties": False,
        }
        required = [key for key, field in self.fields.items() if field.required]
        if required:
            body["required"] = required
        if not self.def_name:
            return body
        defs[self.def_name] = body
        return {"$ref": f"#/$defs/{self.def_name}"}


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
