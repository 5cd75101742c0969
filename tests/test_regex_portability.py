"""No module-level regular expression repeats a lookahead possessively.

Python 3.11.2, Debian 12's, matches ``(?:[^<]++|<(?!/x))*+`` past ``</x``: a
lookahead in a possessive group is ignored after the group's first pass (fixed in a
later 3.11). Debian's Python is the one a Debian install runs, so the HTML tokenizer
read raw text otherwise than the tests, which ran on another; it now runs lazily to its
end tag (htmltokens). Possessive groups without a lookaround matched alike on both
(200,000 random tags and declarations each): they stay, faster than the alternatives.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import re._constants as sre_constants  # the parser's own opcodes
import re._parser as sre_parse
from collections.abc import Iterator
from types import ModuleType

import postwarden_admin_api
import postwarden_milter
import postwarden_policies
import postwarden_store

_LOOKAROUND = {sre_constants.ASSERT, sre_constants.ASSERT_NOT}


def _modules(package: ModuleType) -> Iterator[ModuleType]:
    yield package
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        if not info.name.endswith("__main__"):
            yield importlib.import_module(info.name)


def _ops(items: sre_parse.SubPattern) -> Iterator[tuple[object, object]]:
    """Every opcode in ``items``, nested ones included."""
    for op, av in items:
        yield op, av
        for value in av if isinstance(av, (tuple, list)) else (av,):  # an atomic group's
            parts = value if isinstance(value, (tuple, list)) else (value,)
            for part in parts:
                if isinstance(part, sre_parse.SubPattern):
                    yield from _ops(part)


def _possessive_lookarounds(items: sre_parse.SubPattern) -> Iterator[str]:
    for op, av in _ops(items):
        if op is sre_constants.POSSESSIVE_REPEAT and any(
                inner in _LOOKAROUND for inner, _ in _ops(av[2])):
            yield str(av)


def test_the_check_finds_the_form_debians_python_gets_wrong() -> None:
    assert list(_possessive_lookarounds(sre_parse.parse(r"a(?:[^<]++|<(?!/x))*+"))) != []
    assert list(_possessive_lookarounds(sre_parse.parse(r"(?:b|(?:c(?=d))?)++"))) != []
    assert list(_possessive_lookarounds(sre_parse.parse(r"(?>(?:[^<]++|<(?!/x))*+)"))) != []
    assert list(_possessive_lookarounds(sre_parse.parse(rb"(?:[^<]++|<(?!/x))*+"))) != []
    assert list(_possessive_lookarounds(sre_parse.parse(r"a(?>(?:[^<]++|<(?!/x))*)"))) == []
    assert list(_possessive_lookarounds(sre_parse.parse(r"(?:[^<]++|<b)*+"))) == []


def test_no_pattern_repeats_a_lookahead_possessively() -> None:
    found = []
    for package in (postwarden_policies, postwarden_milter, postwarden_admin_api,
                    postwarden_store):
        for module in _modules(package):
            for name, value in vars(module).items():
                if isinstance(value, re.Pattern):
                    parsed = sre_parse.parse(value.pattern, value.flags)
                    found += [f"{module.__name__}.{name}" for _ in _possessive_lookarounds(parsed)]
    assert found == []
