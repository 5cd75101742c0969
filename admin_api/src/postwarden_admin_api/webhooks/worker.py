"""The delivery worker: claim due deliveries, send them, record the outcome.

Claiming takes due rows with ``FOR UPDATE SKIP LOCKED`` (several service
instances share the work), counts the attempt and pushes ``next_attempt_at``
past the request timeout as a lease, all in one short statement; the HTTP
request runs outside any transaction. If the process dies mid-request the
lease runs out and the delivery is tried again: delivery is at least once,
and receivers deduplicate on ``webhook-id``. A failed attempt is retried
after an exponential backoff with jitter, or as long as the receiver's
``Retry-After`` asks (then its other deliveries wait too); after ``max_attempts``
the delivery is ``dead`` and can be replayed through the API. One that can never be sent
(an ``api_call`` body over the limit: the event's data will not shrink) is
``dead`` at once. So is one its receiver answers 410 Gone (it will take nothing again:
a deleted Slack webhook), and the endpoint is disabled, with the reason
(``disabled_reason``, migration 0045) and an entry in the admin audit log, which
holds the warnings (.notify_targets, logged too) of the active rules that notified it.

Deliveries are sent in a rolling window: up to ``batch_size`` in flight, and
more claimed as soon as one ends, so a receiver that hangs until the timeout
holds only its own deliveries. Of one endpoint at most
``WebhookOptions.endpoint_in_flight`` are in flight (the claim skips the rest
of its deliveries), so a dead endpoint with a long queue cannot fill the
window either.

The endpoint's settings (URL, secret, headers, template) are read as the request
starts, not at the claim, under the endpoint's row, and the delivery is marked as
under way (``sending_since``, migration 0051): a change of the endpoint answers once
the requests started before it have ended (:func:`sent_before`), so none goes out
with settings an answered change replaced, and none mixes old and new; a delete once
those under way have ended (:func:`sent_under_lock`), so none goes out after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import math
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client import Gauge

from postwarden_admin_api import admin_audit
from postwarden_admin_api.backoff import doubled
from postwarden_admin_api.context import POOL
from postwarden_admin_api.errors import COMMAND_TIMEOUT, ApiError, briefly, connection
from postwarden_admin_api.metrics import METRICS, Metrics
from postwarden_admin_api.notify_targets import active_warnings
from postwarden_admin_api.periodic import DB_ERRORS, pooled, surviving
from postwarden_admin_api.revisions import lock_policies
from postwarden_admin_api.secrets import KEYRING, Keyring, SecretsError
from postwarden_store import watch as store_watch

from .connector import Outcome, open_session, post
from .events import envelope
from .options import WEBHOOK_OPTIONS, WebhookOptions
from .payloads import BodyTooLarge, Endpoint, Kind, render
from .templates import seal_plain_templates, template_of
from .urls import seal_plain_urls, url_of

log = logging.getLogger(__name__)
T = TypeVar("T")

# $1 free slots of the window, $2 the lease, $3/$4 the endpoints with deliveries in
# flight and how many, $5 the cap per endpoint. Each enabled endpoint below its cap, and
# not held by its receiver's Retry-After, offers its oldest due deliveries, as many as
# it has room for (one short range of webhook_deliveries_endpoint_due each: a capped
# endpoint's backlog is never read); the oldest $1 of those are claimed.
CLAIM = """
WITH busy AS (
    SELECT * FROM unnest($3::bigint[], $4::int[]) AS b(endpoint_id, in_flight)
), within_cap AS (
    SELECT w.id FROM webhook_endpoints p
    LEFT JOIN busy b ON b.endpoint_id = p.id
    CROSS JOIN LATERAL (
        SELECT w.id FROM webhook_deliveries w
        WHERE w.endpoint_id = p.id AND w.status = 'pending' AND w.next_attempt_at <= now()
        ORDER BY w.next_attempt_at, w.id
        LIMIT $5 - coalesce(b.in_flight, 0)) w
    WHERE p.enabled AND coalesce(b.in_flight, 0) < $5
      AND (p.held_until IS NULL OR p.held_until <= now())
), claimed AS (
    UPDATE webhook_deliveries d
    SET attempts = d.attempts + 1,
        next_attempt_at = now() + make_interval(secs => $2)
    WHERE d.id IN (
        -- Checked again once locked: another instance may have claimed it meanwhile.
        SELECT w.id FROM webhook_deliveries w
        WHERE w.id = ANY (ARRAY(SELECT id FROM within_cap))
          AND w.status = 'pending' AND w.next_attempt_at <= now()
        ORDER BY w.next_attempt_at, w.id
        LIMIT $1
        FOR UPDATE OF w SKIP LOCKED)
    RETURNING d.id, d.attempts, d.event_id, d.endpoint_id
)
SELECT c.id, c.attempts, c.endpoint_id, e.event_id::text AS msg_id, e.type,
       e.payload::text AS payload, e.created_at
FROM claimed c
JOIN webhook_events e ON e.id = c.event_id
"""
# The endpoint's settings, read as the request starts (not at the claim): under the
# endpoint's row (FOR SHARE), so a change holding it (FOR UPDATE) is waited for and its
# settings are read, all of them from the one row version; a change made after waits in
# turn for this request to end (see SENDING). Nothing when the endpoint was disabled or
# deleted meanwhile, or the delivery is this claim's no more (a replay cancelled by a new
# URL, a lease run out and claimed again).
START = """
WITH p AS (
    SELECT id AS endpoint_id, name, url, url_ciphertext, url_origin, kind,
           secret_ciphertext, headers_ciphertext, body_template::text AS body_template,
           body_template_ciphertext
    FROM webhook_endpoints WHERE id = $2 AND enabled
    FOR SHARE
), started AS (
    UPDATE webhook_deliveries d SET sending_since = now(), last_attempt_at = now()
    FROM p
    WHERE d.id = $1 AND d.endpoint_id = p.endpoint_id AND d.status = 'pending'
      AND d.attempts = $3
    RETURNING d.id
)
SELECT p.* FROM p CROSS JOIN started
"""
# A claim not sent after all (its endpoint disabled meanwhile) costs no attempt: it made
# none (START sets last_attempt_at).
RELEASE = """
UPDATE webhook_deliveries SET attempts = attempts - 1, next_attempt_at = now()
WHERE id = $1 AND attempts = $2 AND status = 'pending'
"""
# The endpoint's requests under way with its settings as they were at $2: started before
# it and not recorded, their lease not run out (a worker that died mid-request).
SENDING = """
SELECT EXISTS (SELECT FROM webhook_deliveries
               WHERE endpoint_id = $1 AND sending_since <= $2 AND next_attempt_at > now())
"""
MARK_DELIVERED = """
UPDATE webhook_deliveries
SET status = 'delivered', delivered_at = now(), last_status_code = $2, last_error = NULL,
    sending_since = NULL
WHERE id = $1
"""
# $6: the delivery can never be sent, so it is dead whatever its attempts.
MARK_FAILED = """
UPDATE webhook_deliveries
SET status = CASE WHEN status = 'dead' OR attempts >= $4 OR $6 THEN 'dead' ELSE 'pending' END,
    next_attempt_at = now() + make_interval(secs => $5),
    last_status_code = $2, last_error = $3, sending_since = NULL
WHERE id = $1
RETURNING status
"""
# A receiver's Retry-After speaks for the receiver, not for one delivery: nothing is
# claimed for the endpoint for $2 seconds (migration 0043), the failed delivery included,
# costing its deliveries no attempt. One row: a backlog's rows are not rewritten at every
# 429. Only while the URL is the one that answered ($3, $4): setting the URL ends a hold
# (routes.UPDATE), and an answer of the old receiver that comes after must not hold the
# new one, nor the failed delivery's retry to it.
HOLD_ENDPOINT = """
UPDATE webhook_endpoints
SET held_until = greatest(held_until, now() + make_interval(secs => $2))
WHERE id = $1 AND url_ciphertext IS NOT DISTINCT FROM $3 AND url IS NOT DISTINCT FROM $4
"""
# A 410 Gone speaks for the URL the delivery was sent to: not for one set since.
DISABLE_GONE = """
UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = now()
WHERE id = $1 AND enabled
  AND url_ciphertext IS NOT DISTINCT FROM $3 AND url IS NOT DISTINCT FROM $4
RETURNING name
"""
GONE_REASON = "the receiver answered 410 Gone"
URL_KEPT = """
SELECT EXISTS (SELECT FROM webhook_endpoints WHERE id = $1
               AND url_ciphertext IS NOT DISTINCT FROM $2 AND url IS NOT DISTINCT FROM $3)
"""
# Only to the URL the delivery was made for (migration 0020): not to one set since.
# Not while a delivery of its event to the endpoint is pending (a replay asked for
# twice): both would be sent, at once. The route holds the endpoint's row.
REPLAY = """
INSERT INTO webhook_deliveries (event_id, endpoint_id, replay_of)
SELECT d.event_id, d.endpoint_id, d.id FROM webhook_deliveries d
JOIN webhook_endpoints p ON p.id = d.endpoint_id
WHERE d.id = $1 AND d.endpoint_id = $2 AND d.status IN ('delivered', 'dead')
  AND d.created_at >= p.url_set_at
  AND NOT EXISTS (SELECT FROM webhook_deliveries o WHERE o.event_id = d.event_id
                  AND o.endpoint_id = d.endpoint_id AND o.status = 'pending')
RETURNING id
"""
# A replay still pending when the URL is set would go to the new URL: it is
# dead instead (an attempt in flight keeps it so, see MARK_FAILED).
CANCEL_REPLAYS = """
UPDATE webhook_deliveries
SET status = 'dead', last_error = 'endpoint URL changed before the replay was sent'
WHERE endpoint_id = $1 AND status = 'pending' AND replay_of IS NOT NULL
"""


def backoff_seconds(attempts: int, options: WebhookOptions) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random."""
    delay = doubled(options.backoff_base_seconds, attempts, options.backoff_cap_seconds)
    return delay / 2 + secrets.SystemRandom().uniform(0, delay / 2)


def asked_wait(outcome: Outcome, options: WebhookOptions) -> float:
    """The wait the receiver's ``Retry-After`` asks for (a 429 of a rate limit, a 503 of a
    maintenance), at most ``backoff_cap_seconds`` as any wait; 0 when it asks for none."""
    return min(outcome.retry_after or 0.0, options.backoff_cap_seconds)


def endpoint_from_row(row: Mapping[str, Any], keyring: Keyring) -> Endpoint:
    """Decrypt the row's URL, secret, headers and template; raises SecretsError when the key
    is missing."""
    secret = row["secret_ciphertext"]
    headers = row["headers_ciphertext"]
    return Endpoint(
        id=row["endpoint_id"],
        name=row["name"],
        url=url_of(row, keyring),
        kind=Kind(row["kind"]),
        secret=None if secret is None else keyring.decrypt(secret),
        headers={} if headers is None else json.loads(keyring.decrypt(headers)),
        body_template=template_of(row, keyring),
    )


async def _attempt(
    session: aiohttp.ClientSession, options: WebhookOptions, keyring: Keyring,
    row: Mapping[str, Any],
) -> Outcome:
    """One attempt; raises BodyTooLarge when the delivery can never be sent."""
    try:
        endpoint = endpoint_from_row(row, keyring)
    except SecretsError:
        log.error("webhook %s: cannot decrypt the endpoint's secrets", row["name"])
        return Outcome(None, "endpoint secret cannot be decrypted")
    event = envelope(row["type"], row["created_at"], json.loads(row["payload"]))
    request = render(endpoint, row["msg_id"], event)
    return await post(session, options.guard, endpoint.url, request)


async def _deliver(
    pool: asyncpg.Pool, session: aiohttp.ClientSession, options: WebhookOptions,
    keyring: Keyring, claimed: Mapping[str, Any], *, metrics: Metrics,
) -> None:
    """Send one claimed delivery and record the outcome; raises nothing but cancellation."""
    row = None
    # Unstarted (the database is away), the delivery comes back when its lease ends.
    with surviving("webhook worker", traceback=False):
        row = await _start(pool, options, claimed)
    if row is None:
        return
    final = False
    try:
        outcome = await _attempt(session, options, keyring, row)
    except BodyTooLarge as exc:
        # The event's data will not shrink: every retry would fail the same way.
        outcome, final = Outcome(None, f"not sent, not retried: {exc}"), True
    # A bug must cost this delivery an attempt, not stop the worker. Logged by type
    # only, without a traceback: an exception's text may quote the URL, a secret.
    except Exception as exc:  # noqa: BLE001
        log.error("webhook %s: delivery %s failed unexpectedly (%s)", row["name"], row["id"],
                  type(exc).__name__)
        outcome = Outcome(None, "internal error")
    # Unrecorded (the database is away), the delivery comes back when its lease ends.
    with surviving("webhook worker", traceback=False):
        await _record(pool, options, metrics, row, outcome, final=final)


async def _start(pool: asyncpg.Pool, options: WebhookOptions, claimed: Mapping[str, Any]
                 ) -> dict[str, Any] | None:
    """The claimed delivery with its endpoint's settings as its request starts; None when
    it is not to be sent (see START)."""
    async with pooled(pool) as conn:
        # The endpoint's row: see row_wait_seconds, while_answering.
        endpoint = await while_answering(pool, conn.fetchrow(
            START, claimed["id"], claimed["endpoint_id"], claimed["attempts"],
            timeout=row_wait_seconds(options)))
        if endpoint is None:
            await conn.execute(RELEASE, claimed["id"], claimed["attempts"])
            return None
    return {**claimed, **endpoint}


async def _record(
    pool: asyncpg.Pool, options: WebhookOptions, metrics: Metrics, row: Mapping[str, Any],
    outcome: Outcome, *, final: bool,
) -> None:
    async with pooled(pool) as conn:
        if outcome.ok:
            await conn.execute(MARK_DELIVERED, row["id"], outcome.status)
            metrics.webhook_attempts.labels("delivered").inc()
            log.info("webhook %s: delivery %s of %s delivered (attempt %s)",
                     row["name"], row["id"], row["type"], row["attempts"])
            return
        if outcome.status == HTTPStatus.GONE:
            outcome, final = await _gone(conn, row)
        status = await conn.fetchval(
            MARK_FAILED, row["id"], outcome.status, outcome.error, options.max_attempts,
            backoff_seconds(row["attempts"], options), final,
        )
        # Longer when the receiver asks: retried sooner, every attempt failed again and
        # the delivery was dead within minutes.
        if asked := asked_wait(outcome, options):
            # The endpoint's row: see row_wait_seconds, while_answering.
            await while_answering(pool, conn.execute(
                HOLD_ENDPOINT, row["endpoint_id"], asked, row["url_ciphertext"], row["url"],
                timeout=row_wait_seconds(options)))
        if (final and outcome.status == HTTPStatus.GONE
                and await _disable_gone(pool, conn, row, row_wait_seconds(options))):
            metrics.webhook_endpoints_disabled.inc()
    # The origin, never the URL: its path or query may hold a credential.
    args = (row["name"], row["url_origin"], row["id"], row["attempts"], outcome.error)
    if status is None:  # no row: the endpoint, its deliveries with it, deleted meanwhile
        log.warning("webhook %s (%s): delivery %s attempt %s failed (%s);"
                    " the endpoint was deleted meanwhile", *args)
        return
    metrics.webhook_attempts.labels("dead" if status == "dead" else "failed").inc()
    # Dead (given up, whatever the reason), the event is lost to the receiver: an error.
    log.log(logging.ERROR if status == "dead" else logging.WARNING,
            "webhook %s (%s): delivery %s attempt %s failed (%s), now %s", *args, status)


async def _gone(conn: asyncpg.Connection, row: Mapping[str, Any]) -> tuple[Outcome, bool]:
    """A 410, and whether it is final: every retry would be answered the same. Not when
    the endpoint's URL was set while the request was under way: the 410 was the old
    receiver's, the new one may take the delivery (and a replay of it, made for the old
    URL, would be refused)."""
    if await conn.fetchval(URL_KEPT, row["endpoint_id"], row["url_ciphertext"], row["url"]):
        return Outcome(HTTPStatus.GONE, "HTTP 410 (gone): not retried"), True
    return Outcome(HTTPStatus.GONE, "HTTP 410 (gone) from the URL set before"), False


async def _disable_gone(pool: asyncpg.Pool, conn: asyncpg.Connection, row: Mapping[str, Any],
                        wait: float) -> bool:
    """Disable the endpoint whose receiver is gone: its other deliveries wait until an
    operator enables it again (a new URL, say), and new events raise none. False when
    there was nothing to disable. ``wait``: for the locks, see row_wait_seconds (and
    while_answering: ``conn`` is of ``pool``)."""
    async with conn.transaction():
        # Before the row, as the routes do (see active_warnings).
        await while_answering(pool, lock_policies(conn, wait))
        name = await while_answering(pool, conn.fetchval(
            DISABLE_GONE, row["endpoint_id"], GONE_REASON, row["url_ciphertext"], row["url"],
            timeout=wait))
        if name is None:  # disabled already (another delivery), or its URL set since
            return False
        warnings = await active_warnings(conn, [name])
        await admin_audit.write(conn, actor=None, address=None, action="webhook.disabled",
                                target=name, summary={"reason": GONE_REASON,
                                                      "delivery_id": row["id"],
                                                      "warnings": warnings})
    log.error("webhook %s (%s): disabled, %s", name, row["url_origin"], GONE_REASON)
    return True


class InFlight:
    """The deliveries being sent: at most ``batch_size``, of one endpoint at most
    ``endpoint_in_flight``."""

    def __init__(self, options: WebhookOptions) -> None:
        self._size = options.batch_size
        self._tasks: set[asyncio.Task[None]] = set()
        self._endpoints: Counter[int] = Counter()
        self.freed = asyncio.Event()  # set whenever a delivery ends

    def free(self) -> int:
        return self._size - len(self._tasks)

    def busy(self) -> tuple[list[int], list[int]]:
        """The endpoints with deliveries in flight, and how many each (the claim's $3, $4)."""
        return list(self._endpoints), list(self._endpoints.values())

    def start(self, endpoint_id: int, delivery: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(delivery)
        self._tasks.add(task)
        self._endpoints[endpoint_id] += 1
        task.add_done_callback(functools.partial(self._ended, endpoint_id))

    def _ended(self, endpoint_id: int, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._endpoints[endpoint_id] -= 1
        if not self._endpoints[endpoint_id]:
            del self._endpoints[endpoint_id]
        self.freed.set()

    async def finish(self) -> None:
        """Wait for every delivery in flight to be sent and recorded."""
        await asyncio.gather(*self._tasks)


# The backlog, counted at each scrape: webhook_deliveries_endpoint_due holds only the
# pending rows: the count can read them alone, not the history.
COUNT_PENDING = "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
# A scrape waits no longer for the database (away, or its pool busy) than this.
COUNT_TIMEOUT_SECONDS = 2.0
# A claimed delivery starts at once and its request ends within timeout_seconds;
# the margin covers rendering it and waiting for a pool connection to record it.
LEASE_MARGIN_SECONDS = 30.0
# A stop waits for the deliveries in flight this much longer than their request may take.
STOP_MARGIN_SECONDS = 5.0


async def deliver_due(
    pool: asyncpg.Pool, session: aiohttp.ClientSession, options: WebhookOptions,
    keyring: Keyring, in_flight: InFlight, *, metrics: Metrics,
) -> int:
    """Claim due deliveries into the free slots of ``in_flight`` and start sending them;
    returns how many were claimed."""
    lease = options.timeout_seconds + LEASE_MARGIN_SECONDS
    async with pooled(pool) as conn:
        rows = await conn.fetch(CLAIM, in_flight.free(), lease, *in_flight.busy(),
                                options.endpoint_in_flight)
    for row in rows:
        delivery = _deliver(pool, session, options, keyring, row, metrics=metrics)
        in_flight.start(row["endpoint_id"], delivery)
    return len(rows)


async def _any_set(*events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set."""
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def run_worker(
    pool: asyncpg.Pool, options: WebhookOptions, keyring: Keyring, metrics: Metrics,
    stop: asyncio.Event,
) -> None:
    """Deliver until ``stop`` is set; no error ends the loop (see ``surviving``).

    The deliveries in flight when ``stop`` is set are finished and recorded, so
    a restart does not send them again.
    """
    async with open_session(
        options.guard, options.timeout_seconds, options.ssl_context, options.lookup
    ) as session:
        in_flight = InFlight(options)
        try:
            while not stop.is_set():
                in_flight.freed.clear()
                free, claimed = in_flight.free(), 0
                if free:
                    with surviving("webhook worker", traceback=False):
                        claimed = await deliver_due(pool, session, options, keyring,
                                                    in_flight, metrics=metrics)
                # Claim again at once while a claim fills every free slot (more may be
                # due); else wait for a slot to free (an endpoint below its cap again) or
                # for deliveries to come due: a claim now would find nothing new.
                if not free or claimed < free:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(options.poll_interval_seconds):
                            await _any_set(stop, in_flight.freed)
        finally:
            await in_flight.finish()


async def replay(conn: asyncpg.Connection, endpoint_id: int, delivery_id: int) -> int | None:
    """Queue a new delivery of a delivered or dead one made for the endpoint's current
    URL, its event pending there no more; None if there is no such delivery."""
    new_id: int | None = await conn.fetchval(REPLAY, delivery_id, endpoint_id)
    return new_id


def row_wait_seconds(options: WebhookOptions) -> float:
    """How long a statement may wait for an endpoint's row: a delete holds it while the
    requests under way end (:func:`sent_under_lock`, at most their lease), which may be
    longer than the pool's command_timeout (a database gone silent); then as long again."""
    return options.timeout_seconds + LEASE_MARGIN_SECONDS + COMMAND_TIMEOUT


async def _answers(pool: asyncpg.Pool) -> None:
    """A trivial statement on another pooled connection: TimeoutError when none could be
    made or it got no answer in time (a transaction waiting then is ended, not rolled
    back: see postwarden_store.pool); a full pool tells nothing."""
    try:
        async with connection(pool) as probe:
            await probe.execute("SELECT 1")
    except ApiError as refused:
        if refused.code == "database_busy":
            return
        raise TimeoutError from refused


async def while_answering(pool: asyncpg.Pool, waiting: Awaitable[T]) -> T:
    """A request's or the worker's ``waiting``, a statement that may wait
    row_wait_seconds for a lock a webhook delete holds, given up (TimeoutError: a
    request's 503 database_unavailable, the worker's outage, the delivery's slot and
    connection freed) once a probe on another connection gets no answer within the
    pool's command_timeout: a frozen database is told as a statement elsewhere tells
    it, not after the whole wait, which a held lock and a silent server could not be
    told apart in. A probe that finds the pool full (database_busy) tells nothing, and
    the wait goes on."""
    return await store_watch.while_answering(waiting, functools.partial(_answers, pool))


async def lock_policies_behind_deletes(conn: asyncpg.Connection, app: web.Application) -> None:
    """The policy lock for a change, waited for as long as a webhook delete may hold it
    (see row_wait_seconds): within the pool's command_timeout only, an upload, an
    activation, a deploy or a Rules API change behind one was 503 database_unavailable,
    the database well. A database gone silent meanwhile: see while_answering."""
    await while_answering(app[POOL], lock_policies(conn, row_wait_seconds(app[WEBHOOK_OPTIONS])))


# How often a change polls for the requests under way with the settings it replaced.
SENDING_POLL_SECONDS = 0.1


async def _until_ended(options: WebhookOptions, sending: Callable[[], Awaitable[bool]]
                       ) -> None:
    """Poll ``sending`` until it says False, at most a request's lease."""
    lease = options.timeout_seconds + LEASE_MARGIN_SECONDS
    for _ in range(math.ceil(lease / SENDING_POLL_SECONDS)):
        if not await sending():
            return
        await asyncio.sleep(SENDING_POLL_SECONDS)


async def sent_before(pool: asyncpg.Pool, options: WebhookOptions, endpoint_id: int,
                      changed_at: dt.datetime) -> None:
    """Wait for the endpoint's requests started with its settings as they were before
    ``changed_at`` to end (at most their lease): once the change is answered, no request
    goes out with the old ones."""
    async def sending() -> bool:
        # A request's connection: a pool busy or a database away is its 503, not a wait
        # without end.
        async with connection(pool) as conn:
            return bool(await conn.fetchval(SENDING, endpoint_id, changed_at))

    await _until_ended(options, sending)


async def sent_under_lock(conn: asyncpg.Connection, options: WebhookOptions,
                          endpoint_id: int, locked_at: dt.datetime) -> None:
    """Wait for the endpoint's requests under way to end (at most their lease), its row
    held (FOR NO KEY UPDATE, since ``locked_at``) by ``conn``'s transaction: none starts
    meanwhile (see START). For a delete, whose deliveries go with the row: after it,
    :func:`sent_before` would find none to wait for."""
    async def sending() -> bool:
        return bool(await conn.fetchval(SENDING, endpoint_id, locked_at))

    await _until_ended(options, sending)


async def cancel_pending_replays(conn: asyncpg.Connection, endpoint_id: int) -> None:
    """Mark the endpoint's pending replays dead: its URL is being set."""
    await conn.execute(CANCEL_REPLAYS, endpoint_id)


@contextlib.asynccontextmanager
async def running(pool: asyncpg.Pool, options: WebhookOptions, keyring: Keyring,
                  metrics: Metrics) -> AsyncIterator[None]:
    """Run the worker in the background; on exit let the deliveries in flight finish."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(pool, options, keyring, metrics, stop))
    try:
        yield
    finally:
        stop.set()
        try:
            async with asyncio.timeout(options.timeout_seconds + STOP_MARGIN_SECONDS):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def count_pending(pool: asyncpg.Pool, gauge: Gauge) -> None:
    """Set ``gauge`` to the deliveries pending, NaN when the database does not tell: a
    value kept from an earlier scrape would pass for the backlog now."""
    try:
        async with briefly(pool, COUNT_TIMEOUT_SECONDS) as conn:
            gauge.set(await conn.fetchval(COUNT_PENDING))
    except DB_ERRORS:
        gauge.set(math.nan)


async def worker_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: seal plain-text URLs and templates, then run the delivery worker while
    the service runs (and count its backlog at each scrape)."""
    async with pooled(app[POOL]) as conn:
        await seal_plain_urls(conn, app[KEYRING])
        await seal_plain_templates(conn, app[KEYRING])
    metrics = app[METRICS]
    metrics.refreshers.append(functools.partial(count_pending, app[POOL], metrics.webhook_pending))
    async with running(app[POOL], app[WEBHOOK_OPTIONS], app[KEYRING], app[METRICS]):
        yield
