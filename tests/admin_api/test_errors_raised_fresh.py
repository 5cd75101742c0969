"""Errors a route raises are made afresh for each request.

An exception object raised again keeps the traceback of every earlier raise and adds
the new one's frames to it: a module-level ``ApiError`` raised for each unknown id kept
every such request's frames (its request, its connection) alive for good, the traceback
growing by one chain per 404."""

from __future__ import annotations

import importlib
import pkgutil

import postwarden_admin_api
from postwarden_admin_api.errors import ApiError


def _modules() -> list[str]:
    return [info.name for info in pkgutil.walk_packages(postwarden_admin_api.__path__,
                                                        "postwarden_admin_api.")]


def test_no_module_holds_an_api_error_to_raise() -> None:
    held = [f"{name}.{attribute}" for name in _modules()
            for attribute, value in vars(importlib.import_module(name)).items()
            if isinstance(value, ApiError)]
    assert held == []


def test_the_walk_sees_the_route_modules() -> None:
    """The check above looks where routes are: it cannot pass by reading nothing."""
    modules = _modules()
    assert {"postwarden_admin_api.routes_audit", "postwarden_admin_api.send.routes"} <= set(modules)
