"""Pauses of Python's garbage collector: while one runs, the event loop answers no request.

A full collection walks every object the process holds that is tracked; in the send
API's benchmark one took up to 32 ms, for every request under way. ``serve`` freezes
what start-up built (modules, the pool, the routes: :func:`gc.freeze`), which
full collections then skip; ``postwarden_gc_pause_seconds`` shows what is left.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from .metrics import METRICS


async def gc_pauses(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: time the collector's pauses, by generation, while the application runs."""
    histogram = app[METRICS].gc_pauses
    started = 0.0  # collections never overlap

    def observe(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            histogram.labels(str(info["generation"])).observe(time.perf_counter() - started)

    gc.callbacks.append(observe)
    try:
        yield
    finally:
        gc.callbacks.remove(observe)
