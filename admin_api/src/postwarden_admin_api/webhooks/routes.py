"""``/api/v1/webhooks``: endpoints (admin, operator), their deliveries and replays.

The signing secret and the api_call headers and body template are write-only: stored
encrypted, shown as ``{"is_set": bool}``. The URL is a secret too (:mod:`.urls`): stored
encrypted and shown only as its scheme and host with a mask
(``https://hooks.slack.com/…``) and ``url_is_set``. What a create or change may do is
checked in :mod:`.changes`: every problem at once, a URL the SSRF guard refuses on its
face among them (422 ``url_not_allowed`` with the reason; host names are checked again
at every delivery), and write-only values given again where the change would let them
serve another receiver or another content. A replay goes only to the URL the delivery
was made for: one made before the URL was last set is 409 ``webhook_url_changed`` (an
operator, who may not read the audit log, could otherwise collect it elsewhere). A
change of what or where the endpoint sends answers once the requests under way with the
old settings have ended: none goes out with them after the answer; a delete likewise,
once those under way to the endpoint have ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from aiohttp import web

from postwarden_admin_api import admin_audit
from postwarden_admin_api.bodies import (
    QueryProblems,
    json_ok,
    path_int,
    query_int,
    read_json_object,
)
from postwarden_admin_api.context import POOL, Role, allow, reads_query
from postwarden_admin_api.errors import ApiError, ValidationFailed, connection, database_busy
from postwarden_admin_api.notify_targets import active_warnings
from postwarden_admin_api.sqlwhere import Where

from .changes import NEW_ENDPOINT, key_problems, merged
from .options import WEBHOOK_OPTIONS
from .urls import masked
from .worker import (
    cancel_pending_replays,
    lock_policies_behind_deletes,
    replay,
    row_wait_seconds,
    sent_before,
    sent_under_lock,
    while_answering,
)

routes = web.RouteTableDef()

# The changes here that take the policy lock go one at a time in this process (in the
# database they would queue for it anyway), each waiting its turn without a pool
# connection: queued there, each held one, and a delete's wait for the requests under
# way, whose ends the worker needs a connection to record, could find none left and
# last the requests' whole lease.
POLICY_TURN = web.AppKey("webhook_policy_turn", asyncio.Lock)


@asynccontextmanager
async def _policy_turn(request: web.Request, wanted: bool = True) -> AsyncIterator[None]:
    """This process's turn to take the policy lock (when ``wanted``); 503 database_busy
    once it has waited as long as the lock may be held (see row_wait_seconds)."""
    if not wanted:
        yield
        return
    turn = request.app[POLICY_TURN]
    try:
        async with asyncio.timeout(row_wait_seconds(request.app[WEBHOOK_OPTIONS])):
            await turn.acquire()
    except TimeoutError:
        raise database_busy() from None
    try:
        yield
    finally:
        turn.release()

DELIVERY_STATUSES = ("pending", "delivered", "dead")
DELIVERY_PARAMETERS = ("status", "before_id", "limit")
# The fields whose change a request under way must not outlive (see .worker.START).
SENT_WITH = frozenset({"url", "secret", "headers", "body_template", "kind", "enabled"})

COLUMNS = """id, name, url, url_ciphertext, url_origin, kind, events, enabled, created_at,
    updated_at,
    body_template::text AS body_template, body_template_ciphertext, secret_ciphertext,
    headers_ciphertext, send_keys, disabled_reason"""
SELECT_ALL = f"SELECT {COLUMNS} FROM webhook_endpoints ORDER BY name"  # noqa: S608
SELECT_ONE = f"SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1"  # noqa: S608
INSERT = f"""
INSERT INTO webhook_endpoints
    (name, url_ciphertext, url_origin, kind, events, enabled, body_template_ciphertext,
     secret_ciphertext, headers_ciphertext, send_keys)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING {COLUMNS}
"""  # noqa: S608
UPDATE = f"""
UPDATE webhook_endpoints
SET name = $2, url = $3, url_ciphertext = $4, url_origin = $5, kind = $6, events = $7,
    enabled = $8, body_template = $9::text::jsonb, body_template_ciphertext = $10,
    secret_ciphertext = $11, headers_ciphertext = $12, send_keys = $13, updated_at = now(),
    -- why the service disabled it (a receiver gone, migration 0045): not once enabled
    disabled_reason = CASE WHEN $8 THEN NULL ELSE disabled_reason END,
    -- a new URL gets a fresh ciphertext (random nonce): see REPLAY in .worker. The
    -- clock, not now(): this transaction may have waited for the row while deliveries
    -- made after its start went to the old URL; none is made after this statement
    -- until it commits (webhook_raise waits for the row)
    url_set_at = CASE WHEN url_ciphertext IS DISTINCT FROM $4 OR url IS DISTINCT FROM $3
                      THEN clock_timestamp() ELSE url_set_at END,
    -- a hold is the old receiver's Retry-After (migration 0043): not the new one's
    held_until = CASE WHEN url_ciphertext IS DISTINCT FROM $4 OR url IS DISTINCT FROM $3
                      THEN NULL ELSE held_until END
WHERE id = $1
RETURNING {COLUMNS}, clock_timestamp() AS changed_at
"""  # noqa: S608
# Held until the delete commits: no request starts meanwhile (.worker.START reads the row
# FOR SHARE), while events are still raised (webhook_raise locks it FOR KEY SHARE: an
# audit write held up would miss its lock_timeout and be spooled).
LOCK = "SELECT clock_timestamp() FROM webhook_endpoints WHERE id = $1 FOR NO KEY UPDATE"
DELETE = "DELETE FROM webhook_endpoints WHERE id = $1 RETURNING name"
# next_attempt_at only while pending: the worker's claim pushes it ahead as a lease, and a
# delivered or dead delivery showing a time to come would look as if it were tried again.
# Not before the endpoint's hold (its receiver's Retry-After) ends: nothing is sent sooner.
DELIVERY_COLUMNS = """d.id, e.event_id::text AS event_id, e.type, d.status, d.attempts,
       CASE WHEN d.status = 'pending' THEN greatest(d.next_attempt_at, (
           SELECT held_until FROM webhook_endpoints WHERE id = d.endpoint_id)) END
           AS next_attempt_at,
       d.last_attempt_at, d.last_status_code, d.last_error, d.delivered_at, d.replay_of,
       d.created_at"""
SELECT_DELIVERY = f"""
SELECT {DELIVERY_COLUMNS}
FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
WHERE d.id = $1 AND d.endpoint_id = $2
"""  # noqa: S608
NOT_REPLAYED = """
SELECT d.created_at < p.url_set_at AS url_changed,
       EXISTS (SELECT FROM webhook_deliveries o WHERE o.event_id = d.event_id
               AND o.endpoint_id = d.endpoint_id AND o.status = 'pending') AS pending
FROM webhook_deliveries d JOIN webhook_endpoints p ON p.id = d.endpoint_id
WHERE d.id = $1 AND d.endpoint_id = $2
"""


def _shown(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "name": row["name"], "url": masked(row["url_origin"]),
        "url_is_set": True, "kind": row["kind"],
        "events": list(row["events"]), "enabled": row["enabled"],
        "secret": {"is_set": row["secret_ciphertext"] is not None},
        "headers": {"is_set": row["headers_ciphertext"] is not None},
        "body_template": {"is_set": (row["body_template_ciphertext"] is not None
                                     or row["body_template"] is not None)},
        "send_keys": row["send_keys"], "disabled_reason": row["disabled_reason"],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
    }



def _name_taken() -> ApiError:
    return ApiError(409, "name_taken", "a webhook with this name exists",
                    details=[{"field": "name", "message": "taken: choose another name"}])


@routes.get("/api/v1/webhooks")
@allow(Role.OPERATOR)
async def webhooks_list(request: web.Request) -> web.Response:
    async with connection(request.app[POOL]) as conn:
        rows = await conn.fetch(SELECT_ALL)
    return json_ok({"webhooks": [_shown(row) for row in rows]})


@routes.post("/api/v1/webhooks")
@allow(Role.OPERATOR)
async def webhooks_create(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    missing = [{"field": f, "message": "required"} for f in ("name", "url") if f not in data]
    async with connection(request.app[POOL]) as conn, conn.transaction():
        row = merged(request, data, NEW_ENDPOINT, [*missing, *await key_problems(conn, data)])
        try:
            created = await conn.fetchrow(
                INSERT, row["name"], row["url_ciphertext"], row["url_origin"], row["kind"],
                row["events"], row["enabled"], row["body_template_ciphertext"],
                row["secret_ciphertext"], row["headers_ciphertext"], row["send_keys"],
            )
        except asyncpg.UniqueViolationError:
            raise _name_taken() from None
        await admin_audit.record(conn, request, "webhook.created", row["name"],
                                 {"kind": row["kind"], "events": row["events"],
                                  "send_keys": row["send_keys"]})
    return json_ok(_shown(created), status=201)


async def _current(conn: asyncpg.Connection, request: web.Request, lock: bool = False
                   ) -> asyncpg.Record:
    endpoint_id = path_int(request, "id")
    row: asyncpg.Record | None
    if lock:  # it may wait for a delete's lock (see row_wait_seconds, while_answering)
        row = await while_answering(request.app[POOL], conn.fetchrow(
            SELECT_ONE + " FOR UPDATE", endpoint_id,
            timeout=row_wait_seconds(request.app[WEBHOOK_OPTIONS])))
    else:
        row = await conn.fetchrow(SELECT_ONE, endpoint_id)
    if row is None:
        raise ApiError(404, "not_found", "no such webhook")
    return row


@routes.get("/api/v1/webhooks/{id}")
@allow(Role.OPERATOR)
async def webhooks_get(request: web.Request) -> web.Response:
    async with connection(request.app[POOL]) as conn:
        return json_ok(_shown(await _current(conn, request)))


@routes.patch("/api/v1/webhooks/{id}")
@allow(Role.OPERATOR)
async def webhooks_update(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    if not data:  # a change of nothing: it logged webhook.updated (fields []) and dated it
        async with connection(request.app[POOL]) as conn:
            return json_ok({**_shown(await _current(conn, request)), "warnings": []})
    policies = "name" in data or "enabled" in data
    async with (_policy_turn(request, policies), connection(request.app[POOL]) as conn,
                conn.transaction()):
        # See active_warnings. Before the row: an activation takes the policy lock, then
        # (raising policy.activated) the endpoints' rows; the other order could deadlock.
        if policies:
            await lock_policies_behind_deletes(conn, request.app)
        current = await _current(conn, request, lock=True)
        row = merged(request, data, current, await key_problems(conn, data))
        try:
            updated = await conn.fetchrow(
                UPDATE, current["id"], row["name"], row["url"], row["url_ciphertext"],
                row["url_origin"], row["kind"], row["events"], row["enabled"],
                row["body_template"], row["body_template_ciphertext"],
                row["secret_ciphertext"], row["headers_ciphertext"], row["send_keys"],
            )
        except asyncpg.UniqueViolationError:
            raise _name_taken() from None
        if "url" in data:
            await cancel_pending_replays(conn, current["id"])
        await admin_audit.record(conn, request, "webhook.updated", row["name"],
                                 {"fields": sorted(data)})
        left = _left_unserved(data, current, updated)
        warnings = await active_warnings(conn, left) if left else []
    if SENT_WITH.intersection(data):
        await sent_before(request.app[POOL], request.app[WEBHOOK_OPTIONS], current["id"],
                          updated["changed_at"])
    return json_ok({**_shown(updated), "warnings": warnings})


def _left_unserved(data: Mapping[str, Any], current: Mapping[str, Any],
                   updated: Mapping[str, Any]) -> list[str]:
    """The names a change leaves no enabled endpoint to serve: the old one of a rename,
    and the endpoint's own when the change disables it."""
    left = [current["name"]] if updated["name"] != current["name"] else []
    if "enabled" in data and not updated["enabled"]:
        left.append(updated["name"])
    return left


@routes.delete("/api/v1/webhooks/{id}")
@allow(Role.OPERATOR)
async def webhooks_delete(request: web.Request) -> web.Response:
    endpoint_id = path_int(request, "id")
    async with _policy_turn(request), connection(request.app[POOL]) as conn, conn.transaction():
        # Both may wait for another delete's (see row_wait_seconds, while_answering).
        await lock_policies_behind_deletes(conn, request.app)  # see active_warnings
        locked_at = await while_answering(request.app[POOL], conn.fetchval(
            LOCK, endpoint_id, timeout=row_wait_seconds(request.app[WEBHOOK_OPTIONS])))
        if locked_at is None:
            raise ApiError(404, "not_found", "no such webhook")
        # Before the delete: its deliveries, the requests under way among them, go with
        # the row. The policy lock is held meanwhile (taken first: see PATCH), so an
        # activation waits too: a request's time at most (webhook_timeout_seconds), and
        # only while one is under way to this endpoint.
        await sent_under_lock(conn, request.app[WEBHOOK_OPTIONS], endpoint_id, locked_at)
        name = await conn.fetchval(DELETE, endpoint_id)
        await admin_audit.record(conn, request, "webhook.deleted", name)
        warnings = await active_warnings(conn, [name])
    return json_ok({"warnings": warnings})


def _status_filter(request: web.Request) -> str | None:
    status = request.query.get("status")
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValidationFailed([{"field": "status", "message": "expected "
                                 + ", ".join(DELIVERY_STATUSES)}])
    return status


@routes.get("/api/v1/webhooks/{id}/deliveries")
@allow(Role.OPERATOR)
@reads_query(*DELIVERY_PARAMETERS, listed=True)
async def webhooks_deliveries(request: web.Request) -> web.Response:
    # One 422 lists every bad parameter, and every unknown one: a misspelt filter
    # (stauts=dead) would list every delivery, the pending ones among them.
    query = QueryProblems(request)
    status = query.read(_status_filter)
    # 0 is no delivery's id: read as no filter, it listed from the newest (a client's
    # "before the first" got the whole list back), where the other pages refuse it.
    before = query.read(query_int, "before_id", 0, 1, 2**63 - 1) or None
    limit = query.read(query_int, "limit", 50, 1, 500)
    query.raise_any()
    assert limit is not None  # noqa: S101 - a bad one was raised above
    async with connection(request.app[POOL]) as conn:
        endpoint = await _current(conn, request)
        sql, params = deliveries_sql(endpoint["id"], status, before, limit)
        rows = await conn.fetch(sql, *params)
    return json_ok({"deliveries": [dict(row) for row in rows]})


def deliveries_sql(endpoint: int, status: str | None, before: int | None, limit: int
                      ) -> tuple[str, list[Any]]:
    """The statement and parameters of a page of an endpoint's deliveries, newest first:
    only the filters given (.sqlwhere)."""
    where = Where()
    where.add("d.endpoint_id = ${}", endpoint)
    if status is not None:
        where.add("d.status = ${}", status)
    if before is not None:
        where.add("d.id < ${}", before)
    sql = (f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d "  # noqa: S608 - constants
           f"JOIN webhook_events e ON e.id = d.event_id{where} "
           f"ORDER BY d.id DESC LIMIT {where.parameter(limit)}")
    return sql, where.params


async def _not_replayed(conn: asyncpg.Connection, endpoint_id: int, delivery_id: int
                        ) -> ApiError:
    """Why :func:`.worker.replay` queued nothing."""
    found = await conn.fetchrow(NOT_REPLAYED, delivery_id, endpoint_id)
    if found is None:
        return ApiError(404, "not_found", "no such delivery")
    if found["pending"]:  # this delivery, or a replay of its event
        return ApiError(409, "delivery_pending", "a delivery of this event is still pending")
    # Replaying it would send its event to a URL it was never meant for.
    return ApiError(409, "webhook_url_changed",
                    "the webhook's URL was set after this delivery was made")


@routes.post("/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay")
@allow(Role.OPERATOR)
async def webhooks_replay(request: web.Request) -> web.Response:
    delivery_id = path_int(request, "delivery_id")
    async with connection(request.app[POOL]) as conn, conn.transaction():
        # Locked: a URL set meanwhile waits, then finds this replay pending and cancels it.
        endpoint = await _current(conn, request, lock=True)
        new_id = await replay(conn, endpoint["id"], delivery_id)
        if new_id is None:
            raise await _not_replayed(conn, endpoint["id"], delivery_id)
        await admin_audit.record(conn, request, "webhook.replayed", endpoint["name"],
                                 {"delivery_id": delivery_id, "new_delivery_id": new_id})
        created = await conn.fetchrow(SELECT_DELIVERY, new_id, endpoint["id"])
    return json_ok(dict(created), status=202)
