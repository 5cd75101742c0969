"""Liveness, readiness and Prometheus metrics: public, no key needed."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiohttp import web

from postwarden_store import StoreError, check_schema_current, database_problem, read_only

from .context import POOL
from .errors import pool_full
from .metrics import METRICS
from .openapi import operation
from .periodic import DB_ERRORS

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

READY_SECONDS = 5.0  # a probe's answer: a database silent that long is unreachable

STATUS = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string"}, "problem": {"type": "string"}},
}


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _unready(problem: str) -> web.Response:
    return web.json_response({"status": "unready", "problem": problem}, status=503)


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    try:
        async with pool.acquire(timeout=2.0) as conn:
            return await _check(conn)
    except DB_ERRORS as exc:
        if isinstance(exc, TimeoutError) and pool_full(pool):
            log.warning("readiness: every database connection is in use")
            return _unready("database busy")
        log.warning("readiness: database unreachable (%s)", database_problem(exc))
        return _unready("database unreachable")


async def _check(conn: asyncpg.Connection) -> web.Response:
    """The readiness of a pooled connection's database: unreachable when it does not
    answer within READY_SECONDS (a server frozen, a network dropping packets), where
    the probe waited for ever; read-only when it refuses writes (a standby after a
    failover), where every request is 503 but the probe said ready."""
    try:
        async with asyncio.timeout(READY_SECONDS):
            await check_schema_current(conn)
            refuses_writes = await read_only(conn)
    except StoreError:
        return _unready("migrations pending")
    except TimeoutError:
        log.warning("readiness: database unreachable (no answer within %g s)", READY_SECONDS)
        return _unready("database unreachable")
    if refuses_writes:
        log.warning("readiness: the database refuses writes (read-only)")
        return _unready("database read-only")
    return web.json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    await metrics.refresh()
    return metrics.exposition()


OPENAPI_PATHS = {
    "/healthz": {"get": operation("process is up", None, responses={200: STATUS})},
    "/readyz": {"get": operation(
        "database reachable and migrations current", None, responses={200: STATUS, 503: STATUS},
        descriptions={503: "unready: problem is database unreachable, database busy (every "
                      "pooled connection in use), database read-only (it refuses writes: a "
                      "standby) or migrations pending"},
    )},
    "/metrics": {"get": operation("Prometheus metrics", None, responses={200: {"type": "string"}},
                                  response_type="text/plain")},
}
