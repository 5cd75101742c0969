"""docs/api.md lists every error code the admin service can answer with, under the
status it comes with, and no other.

The codes are read from the source: every ``ApiError(status, "code", ...)`` call with
literal arguments (and ApiError subclasses' ``super().__init__(status, "code", ...)``),
the error middleware's status -> code table and its fallback for other statuses, and
the send API's refusals. An ApiError whose status or code is computed is listed in
``COMPUTED_SITES`` with where its code comes from, so a new one fails here until it
is looked at."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from postwarden_admin_api.middleware import HTTP_CODES, HTTP_FALLBACK_CODE
from postwarden_admin_api.send.refusals import Refusal

REPO = Path(__file__).parents[2]
SOURCE = REPO / "admin_api" / "src" / "postwarden_admin_api"
API_MD = REPO / "docs" / "api.md"
COMPUTED_SITES = {
    "middleware.py:errors",  # HTTP_CODES, or HTTP_FALLBACK_CODE
    "send/refusals.py:error",  # a Refusal's
    "send/refusals.py:refuse",  # a Refusal's
}
Pair = tuple[int | str, str]  # (status, code); the fallback's status is "4xx"


def _is_error_call(node: ast.Call, in_error_class: bool) -> bool:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id == "ApiError"
    return (in_error_class and isinstance(func, ast.Attribute) and func.attr == "__init__"
            and isinstance(func.value, ast.Call) and isinstance(func.value.func, ast.Name)
            and func.value.func.id == "super")


def _error_calls(tree: ast.AST) -> Iterator[tuple[str, ast.Call]]:
    """(enclosing function, call) of each error construction in a module."""
    def walk(node: ast.AST, function: str, in_error_class: bool
             ) -> Iterator[tuple[str, ast.Call]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                bases = {b.id for b in child.bases if isinstance(b, ast.Name)}
                yield from walk(child, function, "ApiError" in bases)
                continue
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from walk(child, child.name, in_error_class)
                continue
            if isinstance(child, ast.Call) and _is_error_call(child, in_error_class):
                yield function, child
            yield from walk(child, function, in_error_class)

    yield from walk(tree, "<module>", False)


def source_pairs() -> tuple[set[Pair], set[str]]:
    """(status, code) of every error the source can raise, and the computed sites."""
    pairs: set[Pair] = set()
    computed: set[str] = set()
    for path in sorted(SOURCE.rglob("*.py")):
        for function, call in _error_calls(ast.parse(path.read_text(encoding="utf-8"))):
            status, code = call.args[:2]
            if (isinstance(status, ast.Constant) and isinstance(status.value, int)
                    and isinstance(code, ast.Constant) and isinstance(code.value, str)):
                pairs.add((status.value, code.value))
            else:
                computed.add(f"{path.relative_to(SOURCE)}:{function}")
    pairs |= set(HTTP_CODES.items()) | {("4xx", HTTP_FALLBACK_CODE)}
    return pairs | {(r.status, r.code) for r in Refusal}, computed


def documented_pairs() -> set[Pair]:
    """(status, each backquoted code) of the docs/api.md table rows that start with a
    status (``404``, or ``4xx`` for the fallback)."""
    pairs: set[Pair] = set()
    for line in API_MD.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2:
            continue
        if re.fullmatch(r"\d{3}", cells[0]):
            pairs |= {(int(cells[0]), code) for code in re.findall(r"`([a-z_]+)`", cells[1])}
        elif cells[0] == "4xx":
            pairs |= {("4xx", code) for code in re.findall(r"`([a-z_]+)`", cells[1])}
    return pairs


def test_every_error_the_source_raises_is_documented_and_no_other() -> None:
    raised, computed = source_pairs()
    assert computed == COMPUTED_SITES
    assert len(raised) > 30  # the walk found the calls at all
    documented = documented_pairs()
    assert sorted(raised - documented, key=str) == []
    assert sorted(documented - raised, key=str) == []
