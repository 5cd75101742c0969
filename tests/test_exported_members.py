"""Every package's __all__ names exactly its public members (model: httpx's test)."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = ["postwarden_policies", "postwarden_store", "postwarden_milter", "postwarden_admin_api"]


def public_members(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)  # submodules appear once imported
        and name != "annotations"  # from __future__ import annotations
    }


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_complete(name: str) -> None:
    package = importlib.import_module(name)
    exported = getattr(package, "__all__", None)
    assert exported is not None, f"{name}/__init__.py has no __all__"
    assert len(exported) == len(set(exported)), "__all__ lists a name twice"
    assert set(exported) == public_members(package)
