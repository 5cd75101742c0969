"""``POST /api/v1/send-email``: from a request to an outbox row, or a refusal.

Order: read the JSON, claim the ``Idempotency-Key`` (a finished twin answers
with its stored result; a malformed one claims nothing and is listed with the
field problems, which then refuse the request), then the checks that need no
database (outbound enabled, relay configured, every field, size), then the one
enqueue statement (suppressions, rate limits, storage). A refusal after the
claim releases it. Every attempt leaves one log line (:mod:`.attempts`).

A request holds one pooled connection at a time (:class:`_Held`): with a key, the
claim's, kept through the checks and the build (milliseconds; a second or two for
the largest bodies) for the enqueue and the release, so that a full pool answers
503 before anything is claimed. Were the enqueue to take a second, its 503 would
leave the claim with no connection to be released on, and the key refused 409 until
the claim is stale (``idempotency.STALE_CLAIM``). The runtime settings are read
first: their refresh takes a connection of its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from postwarden_admin_api.bodies import is_large, json_ok, read_json_object, run_sized
from postwarden_admin_api.context import POOL, SETTINGS, Principal
from postwarden_admin_api.errors import DATABASE_AWAY, ApiError, acquire, lost
from postwarden_admin_api.periodic import DB_ERRORS
from postwarden_admin_api.runtime_settings import RUNTIME, RuntimeSettings
from postwarden_store import ending_unanswered

from . import checks, idempotency, limits
from .attempts import Attempt
from .build import AmbiguousAddresses, build_message, new_message_id
from .outbox import (
    Accepted,
    OutcomeUnknown,
    Submission,
    Suppressed,
    Unconfirmed,
    confirm,
    enqueue,
)
from .refusals import FieldProblem, Refusal, refuse
from .relay import RelayWorker
from .request_model import SendRequest, parse_request

_UNAMBIGUOUS = "the display name cannot be written unambiguously: shorten it or drop punctuation"
_AMBIGUOUS = {
    "From": FieldProblem("from", Refusal.INVALID_FIELD, _UNAMBIGUOUS),
    "Sender": FieldProblem("headers.Sender", Refusal.INVALID_HEADER, _UNAMBIGUOUS),
    "To": FieldProblem("to", Refusal.INVALID_RECIPIENT, _UNAMBIGUOUS),
    "Cc": FieldProblem("cc", Refusal.INVALID_RECIPIENT, _UNAMBIGUOUS),
    "Reply-To": FieldProblem("reply_to", Refusal.INVALID_FIELD, _UNAMBIGUOUS),
}
IDEMPOTENCY_HEADER = "Idempotency-Key"
# What the email package writes slowly when it must quote or encode it: display
# names, about 0.15 ms a character (50 of 200 non-ASCII characters: 1.5 s, from a
# 20 KiB body), and extra header values and file names, a tenth of that (20 of 880:
# 0.3 s). Past HEAVY_HEADER_TEXT characters of these, one of a display name counting
# NAME_WEIGHT, the build leaves the event loop however small the body.
HEAVY_HEADER_TEXT = 4096
NAME_WEIGHT = 10
log = logging.getLogger(__name__)


@dataclass
class SendState:
    hash_key: limits.HashKey
    relay: RelayWorker | None = None


SEND = web.AppKey("send", SendState)


async def current_hash_key(app: web.Application) -> bytes | None:
    """The recipient-hash key as of the runtime-settings cache (None: unreadable here).

    The cache is re-read within 2 s, and at once on the instance that changed the
    setting, so the instances agree on the key as soon as on any other setting.
    """
    token = await app[RUNTIME].sealed(limits.HASH_KEY_SETTING)
    return app[SEND].hash_key.current(token)


def _idempotency_key(request: web.Request) -> tuple[str | None, tuple[FieldProblem, ...]]:
    """The request's ``Idempotency-Key``; a malformed one is no key but a problem to
    list with the body's (all of a request's field errors come in one answer)."""
    keys = request.headers.getall(IDEMPOTENCY_HEADER, ())
    if len(keys) > 1:  # which one a retry repeats is anyone's guess
        return None, (FieldProblem(IDEMPOTENCY_HEADER, Refusal.INVALID_FIELD,
                                   "given more than once"),)
    key = keys[0] if keys else None
    if key is None or idempotency.valid_key(key):
        return key, ()
    return None, (FieldProblem(IDEMPOTENCY_HEADER, Refusal.INVALID_FIELD,
                               "1 to 255 visible ASCII characters"),)


def _answer(status: int, body: dict[str, Any], replayed: bool) -> web.Response:
    """The answer, its keys in one order: a replay's body comes back from jsonb in
    another (id, status, message_id), and must be the first answer's bytes."""
    headers = {"Location": f"/api/v1/messages/{body['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_ok(dict(sorted(body.items())), status=status, headers=headers)


def _heavy_headers(request: SendRequest) -> bool:
    shown = (request.sender, request.sender_header, *request.to, *request.cc,
             *request.reply_to)
    names = sum(len(m.display_name) for m in shown if m is not None)
    values = sum(len(value) for _, value in request.headers) + sum(
        len(attachment.filename) for attachment in request.attachments)
    return NAME_WEIGHT * names + values > HEAVY_HEADER_TEXT


class _Held:
    """The request's pooled connection: taken when first needed (503 ``database_busy``
    from a full pool), then kept until given back. One lost meanwhile (enqueue closes
    the one it lost, :meth:`using` one whose statement got no answer) is given back
    before another is taken."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._conn: asyncpg.Connection | None = None

    async def get(self) -> asyncpg.Connection:
        if self._conn is not None and lost(self._conn):
            await self.give_back()
        if self._conn is None:
            self._conn = await acquire(self.pool)
        return self._conn

    @asynccontextmanager
    async def using(self) -> AsyncIterator[asyncpg.Connection]:
        """:meth:`get`, for statements outside a transaction: one that gets no answer
        ends the connection (``ending_unanswered``), whose release would wait
        ``ACQUIRE_TIMEOUT`` more for a cancel a frozen server never acknowledges."""
        conn = await self.get()
        with ending_unanswered(conn):
            yield conn

    async def give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self.pool.release(conn)


async def _accept(
    app: web.Application, who: Principal, body: dict[str, Any], large: bool, *, held: _Held,
    runtime: RuntimeSettings, hash_key: bytes | None, key: str | None,
    message_uuid: uuid.UUID, found: tuple[FieldProblem, ...],
) -> dict[str, Any]:
    if not runtime.outbound_enabled:
        raise Refusal.OUTBOUND_DISABLED.error()
    if not app[SETTINGS].relay_host:
        raise Refusal.RELAY_NOT_CONFIGURED.error()
    state = app[SEND]
    if hash_key is None:
        raise Refusal.HASH_KEY_UNREADABLE.error()
    allowed = checks.sender_allowed(who.allowed_senders, runtime.allowed_sender_addresses)
    request = await run_sized(large, parse_request, body, checks.caps_of(runtime), allowed,
                              found)
    now = dt.datetime.now(dt.UTC)
    message_id = new_message_id(request.sender, message_uuid)
    try:
        content = await run_sized(large or _heavy_headers(request), build_message, request,
                                  message_id, now)
    except AmbiguousAddresses as ambiguous:
        raise refuse([_AMBIGUOUS[ambiguous.header]]) from None
    checks.check_size(content, request, runtime)
    checks.check_address_headers(content)
    hashes = {m.key: limits.recipient_hash(hash_key, m.key) for m in request.recipients}
    submission = Submission(who.key_id, request, message_id, content, list(hashes.values()),
                            key, message_uuid)
    send_limits = checks.limits_of(runtime)
    try:
        # Without a key, a full pool answers 503 here, before the enqueue wrote anything.
        accepted = await enqueue(await held.get(), submission, send_limits)
    except Suppressed as suppressed:
        raise checks.suppressed_refusal(request, suppressed.addresses) from None
    except limits.LimitReached as reached:
        # The caller's own fields whose recipient is at its daily limit, so that it
        # knows which recipient to drop.
        at_limit = {address for address, digest in hashes.items()
                    if digest in reached.full_recipients}
        fields = checks.recipient_fields(request, at_limit)
        raise reached.error(send_limits, fields) from None
    except Unconfirmed as unsure:
        # On another connection, once the failed one (closed by enqueue) is given back:
        # a Postgres restart cuts every send at once, and each holding one while waiting
        # for a second would drain the pool. confirm ends the failed one's backend first,
        # which may still be running the call: OutcomeUnknown if it cannot (a 500).
        # It waits for its connection however long: the message may be stored, and a
        # 503 would have the client send it again.
        await held.give_back()
        accepted = await _confirm_elsewhere(held.pool, unsure)
    if state.relay is not None:
        state.relay.wake()
    return accepted.body()


async def _confirm_elsewhere(pool: asyncpg.Pool, unsure: Unconfirmed) -> Accepted:
    """:func:`confirm` on a pooled connection; none to be had leaves the outcome unknown."""
    try:
        conn = await pool.acquire()
    except DB_ERRORS as exc:
        raise OutcomeUnknown("no database connection to confirm the enqueue on") from exc
    try:
        return await confirm(conn, unsure)
    finally:
        await pool.release(conn)


async def _release_claim(held: _Held, key_id: str, key: str, claim_id: uuid.UUID) -> None:
    """Give the Idempotency-Key back so a corrected retry can run, on the claim's own
    connection. Only once that was lost (the enqueue's outcome then confirmed on
    another) is one taken again: with the pool full then, the claim stays until it is
    stale (``idempotency.STALE_CLAIM``), which is safe (the key then sends nothing
    twice), and the request's own error stands."""
    try:
        async with held.using() as conn:
            await asyncio.shield(idempotency.release(conn, key_id, key, claim_id))
    except ApiError as busy:
        log.warning("Idempotency-Key claim of key %s left to go stale: %s", key_id, busy.code)


async def send_email(request: web.Request, who: Principal) -> web.Response:
    attempt = Attempt(who.key_id)
    try:
        body = await read_json_object(request)
        large = is_large(await request.read())  # read() returns the body already read
        attempt.describe(body)
        key, key_problems = _idempotency_key(request)
        app = request.app
        # Before a connection is held: a refresh of either takes one of its own.
        runtime = await app[RUNTIME].get()
        hash_key = await current_hash_key(app)
        message_uuid = uuid.uuid4()  # the message's id, and the key's claim
        held = _Held(app[POOL])
        try:
            if key is not None:
                digest = await run_sized(large, idempotency.request_digest, body)
                async with held.using() as conn:
                    stored = await idempotency.claim(conn, who.key_id, key, digest,
                                                     message_uuid)
                if stored is not None:
                    attempt.log("replayed")
                    return _answer(stored.status, stored.body, replayed=True)
            try:
                answer = await _accept(app, who, body, large, held=held, runtime=runtime,
                                       hash_key=hash_key, key=key,
                                       message_uuid=message_uuid, found=key_problems)
            except BaseException:
                if key is not None:
                    await _release_claim(held, who.key_id, key, message_uuid)
                raise
        finally:
            await held.give_back()
    except ApiError as error:
        attempt.log("refused", error.code)
        raise
    except (*DATABASE_AWAY, TimeoutError):  # answered 503 database_unavailable (middleware)
        attempt.log("refused", "database_unavailable")
        raise
    except Exception:
        attempt.log("error", "internal_error")
        raise
    attempt.log("accepted")
    return _answer(202, answer, replayed=False)
