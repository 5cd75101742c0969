"""Specs of YAML mappings: maps with free keys, and objects with known keys.

:class:`MapOf` reads a mapping from keys to values; :class:`Obj` reads one with
known keys (each a :class:`Field`) and hands the values to a build function,
which reports issues at the fields' nodes through an :class:`ObjectContext`.
Both report duplicate keys (compared case-insensitively) and refuse YAML merge
keys (``<<``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import likely_meant, shown
from .spec import INVALID, JsonSchema, Spec
from .yamlnodes import MERGE_KEYS_REFUSED, MERGE_TAG, Reader, describe, first_at, placed


def _mapping_items(
    node: yaml.Node, reader: Reader, what: str, as_list: str = ""
) -> tuple[list[tuple[str, yaml.Node, yaml.Node]], bool] | None:
    """(key, key node, value node) of a mapping's string keys, and whether there was no
    duplicate among them. A duplicate is an issue, and the other keys are still read,
    to tell their issues at the same time; a key that is no string (a merge key too)
    leaves the mapping's meaning unknown: None, once each such key is told. ``as_list``:
    what to say of a list written instead."""
    if not isinstance(node, yaml.MappingNode):
        hint = as_list if isinstance(node, yaml.SequenceNode) else ""
        reader.error(node, f"expected a mapping ({what}), got {describe(node)}{hint}")
        return None
    items: list[tuple[str, yaml.Node, yaml.Node]] = []
    seen: dict[str, yaml.Node] = {}
    ok = strings = True
    for key_node, value_node in node.value:
        if not reader.visit(value_node):
            return None
        key = reader.scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
        if key_node.tag == MERGE_TAG:
            reader.error(key_node, MERGE_KEYS_REFUSED)
            strings = False
            continue
        if not isinstance(key, str):
            reader.error(key_node, f"expected a string key, got {describe(key_node)}")
            strings = False
            continue
        lowered = key.lower()
        if lowered in seen:
            first = first_at(seen[lowered], key_node)
            reader.error(key_node, f"duplicate key {shown(key)} (first defined at {first})")
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

    def error(self, key: str | None, message: str, item: int | None = None) -> None:
        """An issue at a field (``key``), or at the ``item``-th item of a list field:
        the line of the mistake, not that of the list's first item."""
        self.reader.error(self._item(key, item), message)

    def warn(self, key: str | None, message: str, code: str, item: int | None = None) -> None:
        """A warning, placed as :meth:`error` places an issue."""
        self.reader.warn(self._item(key, item), message, code)

    def _item(self, key: str | None, item: int | None) -> yaml.Node:
        node = self.fields.get(key) if key else None
        if item is not None and isinstance(node, yaml.SequenceNode) and item < len(node.value):
            return placed(node.value[item], self.node)
        return self._node(key)

    def where(self, key: str | None = None) -> tuple[int, int]:
        """Line and column (1-based) of a field's value, or of the object itself."""
        mark = self._node(key).start_mark
        return mark.line + 1, mark.column + 1


Builder = Callable[[dict[str, Any], ObjectContext], Any]


class Obj(Spec):
    """A mapping with known keys; ``build`` turns the read values into a model object.

    With ``label_key`` every issue inside is prefixed with "<title> '<label>': ".
    With ``def_name`` the JSON Schema puts it under ``$defs`` (needed for recursion).
    ``one_of`` names keys of which exactly one must be given: the JSON Schema says so
    (``oneOf``); ``build`` checks it, as it has the words to tell a reader why.
    ``check`` runs instead of ``build`` when a field did not read, with the fields that
    did: the issues between those come with that field's (all issues at once).
    Keys starting with ``extension_prefix`` are not read: a place for anchors (docker
    compose's ``x-`` extension fields), whatever their values hold. ``elsewhere`` says
    where a key this mapping lacks goes (``message``: "in the rule, beside then:"),
    for the issue about it; ``as_list`` what to say of a list written instead of it.
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
        one_of: tuple[str, ...] = (),
        check: Callable[[dict[str, Any], ObjectContext], object] | None = None,
        extension_prefix: str | None = None,
        elsewhere: Mapping[str, str] | None = None,
        as_list: str = "",
    ) -> None:
        self.title = title
        self.as_list = as_list
        self.elsewhere = dict(elsewhere or {})
        self.extension_prefix = extension_prefix
        self.check = check
        self.one_of = one_of
        self.doc = doc
        self.fields = dict(fields)
        self.build = build
        self.def_name = def_name
        self.label_key = label_key

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        label = self._label(node, reader)
        if label is None:
            return self._read(node, reader)
        with reader.named_item(f"{self.title} {shown(label)}: "):
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
        read = _mapping_items(node, reader, self.title, self.as_list)
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
            if self.extension_prefix and key.startswith(self.extension_prefix):
                continue
            field = self.fields.get(key)
            if field is None:
                reader.error(key_node, self._unknown(key))
                ok = False
                continue
            nodes[key] = value_node
            with reader.keyed(key, value_node):
                value = field.spec.read(value_node, reader)
            if value is INVALID:
                ok = False
            else:
                values[key] = value
        for key, field in self.fields.items():
            if key in nodes:
                continue
            if field.required:
                reader.error(node, f"missing required key {key!r} in {self.title}")
                ok = False
            elif field.default is not None:
                values[key] = field.default
        context = ObjectContext(node, nodes, reader)
        if ok:
            return self.build(values, context)
        if self.check is not None:
            self.check(values, context)
        return INVALID

    def _unknown(self, key: str) -> str:
        if key.startswith("\ufeff"):  # YAML skips one only at the start: files joined
            return (f"a byte order mark (U+FEFF) in the middle of the file, before "
                    f"{shown(key[1:])}: remove it (were two files joined?)")
        return (f"unknown key {shown(key)} in {self.title}{self._hint(key)}; expected one "
                f"of: {self._expected()}")

    def _hint(self, key: str) -> str:
        """Where an unknown key goes, or what it likely meant, in parentheses; or ""."""
        if (where := self.elsewhere.get(key)) is not None:
            return f" ({key} goes {where})"
        return likely_meant(key, self.fields)

    def _expected(self) -> str:
        extension = f", or {self.extension_prefix}... (ignored)" if self.extension_prefix else ""
        return ", ".join(self.fields) + extension

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
        if self.extension_prefix:
            body["patternProperties"] = {f"^{self.extension_prefix}": {}}  # letters and -
        required = [key for key, field in self.fields.items() if field.required]
        if required:
            body["required"] = required
        if self.one_of:
            body["oneOf"] = [{"required": [key]} for key in self.one_of]
        if not self.def_name:
            return body
        defs[self.def_name] = body
        return {"$ref": f"#/$defs/{self.def_name}"}
