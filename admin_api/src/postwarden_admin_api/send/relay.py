"""The relay worker: drains the outbox into Postfix's loopback submission listener.

Rows are claimed with ``FOR UPDATE SKIP LOCKED`` (several service instances
may run) and leased by moving ``next_attempt_at`` forward, so no transaction
stays open during SMTP and a crashed worker's rows come back when the lease
ends, or at once to an instance that sees its process gone (:mod:`.claimants`, on the
same host) or its claim token held by no session (:mod:`.claimtoken`, anywhere), but
for a row marked as being submitted. Postfix's reply decides: 250 stores its queue id
(``relayed``), 4xx and connection failures retry with exponential backoff and jitter until
``relay_max_attempts``, 5xx marks the message ``failed`` with the redacted
reply. A last attempt whose message went out unanswered is not ``failed`` at
once: Postfix may have queued it, so it comes back once more for Postfix's log
to decide (:mod:`.receipts`), and is not sent again. ``workers`` tasks run on
the event loop, each with its own SMTP session (:mod:`.submit`) reused for
message after message.

A claimed batch's lease is renewed while it is worked on, a submit in flight
included (:mod:`.lease`); once it can no longer be proven, the batch sends no
further row: those left are given back, or come back when their lease ends. A
stop that cancels a batch (past its grace), or a query of its that fails, gives back
its rows not yet sent. A submit is cut off past :data:`SUBMIT_SECONDS` (taken as an
answer lost after the message went out: the log decides), and starts only while the
lease lasts that long and :data:`LEASE_MARGIN_SECONDS` more, renewed first when it
would not: a network partition or a slow Postfix then cannot let another worker claim
the row while it is still being submitted. It is cut off sooner once its mark as being
submitted (:data:`SENDING_SECONDS`, renewed while it runs) cannot be proven to last
(:mod:`.mark`).

A Postfix that cannot be reached at all (no connection, no greeting, EHLO
refused) is no attempt on any message: the worker gives its rows back as they
were, and the workers pause together, one pause (:mod:`.unreachable`) grown by
each try that fails up to :data:`UNREACHABLE_PAUSE_MAX`, with one warning each,
and ended by any success, so an outage of any length loses nothing and costs
nobody their attempts, and mail flows within that pause once Postfix is back.

Once Postfix has answered, the answer is stored however long Postgres is
away: a worker that gave up would leave the row to come back when its lease
ends, and a message Postfix had queued would be sent a second time. A 4xx
or 5xx is stored only while the row is still the claim's: once its lease ran out
and another worker claimed it, that claim's attempt decides (storing a retry would
put the row due while it is being sent). When
the message's rows are gone (a PostgreSQL crash with synchronous_commit off lost the
commit that stored them), nothing can store it: the worker logs that and goes on. When
the service dies in that gap all the same, the row comes back "interrupted"
and Postfix's log says whether it was queued (:mod:`.receipts`); so does a
connection lost after the message went out. The claim names the log that will
show an attempt (that of this host's Postfix, which the relay submits to), kept
while the row is unsettled, so only that log is waited for. While the log cannot
tell yet (its follower has not read to its end since, or cleanup took the message
in and qmgr has yet to log it), the row is put off without costing an attempt and
nothing is sent (:mod:`.interrupted`); the batch's other rows go on meanwhile. A
task sends its next message
only once its answer is stored (:mod:`.relayoutcomes`); 250s that come while
another is being stored are stored together next, in one transaction and round
trip (:mod:`.groupcommit`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import socket
import time
import uuid

import asyncpg

from postwarden_admin_api.metrics import Metrics
from postwarden_admin_api.periodic import DB_ERRORS, pooled, surviving
from postwarden_store import database_problem

from .claimants import Claimants
from .claimtoken import ClaimToken, Fenced, unheld
from .groupcommit import GroupCommit
from .interrupted import InterruptedAttempts, PostfixQueue, Undecided
from .lease import BatchLease
from .maillog import MaillogFollower
from .mark import SendingMark
from .outbox import STORED
from .relayoutcomes import (
    Claimed,
    RelayConfig,
    Relayed,
    backoff,
    found_answer,
    record,
    store_relayed,
)
from .submit import DATA_END_SECONDS, QUIT_SECONDS, Outcome, SmtpSession, SubmitResult
from .unreachable import Unreachable

log = logging.getLogger(__name__)

# A claimed row stays "unsettled" until its outcome is stored; claiming one
# that still is means an earlier attempt was cut off (.receipts). Its attempt goes to
# the Postfix whose log is $3, made by reader $4 (.interrupted); one cut off before
# keeps those of that attempt until it is sent again (SENDING). A last attempt ($5:
# relay_max_attempts) is unsettled only as it is sent (SENDING): one cut off comes back
# past its attempts and is not sent again, so one claimed by a service killed before it
# was tried must not look cut off (it was failed, never sent). $6: the claim's token,
# named after its process (.claimants, .claimtoken), kept while the row is leased; not
# being submitted yet (SENDING).
CLAIM = """
UPDATE outbox o
SET attempts = o.attempts + 1, next_attempt_at = now() + $2::interval, claimed_by = $6,
    sending_until = NULL,
    unsettled = due.unsettled OR o.attempts + 1 < $5,
    attempt_log = CASE WHEN due.unsettled THEN o.attempt_log ELSE $3 END,
    attempt_by = CASE WHEN due.unsettled THEN o.attempt_by ELSE $4 END
FROM (
    SELECT message_id, unsettled FROM outbox WHERE next_attempt_at <= now()
    ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
) due
WHERE o.message_id = due.message_id
RETURNING o.message_id, o.envelope_from, o.recipients, o.content, o.attempts,
          due.unsettled AS interrupted, o.attempt_log, o.attempt_by
"""
# A row about to be submitted, on the claim token's connection (.claimtoken): being sent
# until $4 from now, so not reclaimed should the token be seen dead meanwhile; made
# again while the submit runs (.mark: the same values again, but $4). In an
# interrupted attempt's stead, or in its last ($5), unsettled, with this attempt's log
# and reader ($6, $7). Only while still this claim's ($3: its token; as UNLEASE).
SENDING = """
UPDATE outbox SET sending_until = now() + $4::interval, unsettled = unsettled OR $5,
                  attempt_log = CASE WHEN $5 THEN $6 ELSE attempt_log END,
                  attempt_by = CASE WHEN $5 THEN $7 ELSE attempt_by END
WHERE message_id = $1 AND attempts = $2 AND claimed_by = $3
"""
# Rows claimed but not tried go back as they were: due, the claim's attempt not
# counted, and still unsettled when an earlier attempt was interrupted. Only
# while still this claim's (every claim counts an attempt): a lease that ran
# out, Postgres away, may have let another worker claim a row meanwhile.
UNLEASE = """
UPDATE outbox o
SET next_attempt_at = now(), attempts = o.attempts - 1, unsettled = u.interrupted,
    claimed_by = NULL
FROM unnest($1::uuid[], $2::bool[], $3::int[]) AS u (message_id, interrupted, attempts)
WHERE o.message_id = u.message_id AND o.attempts = u.attempts
"""
# Not a row reclaimed meanwhile ($4: the claim's token): made due, it is no longer leased.
RENEW = """
UPDATE outbox o SET next_attempt_at = now() + $3::interval
FROM unnest($1::uuid[], $2::int[]) AS u (message_id, attempts)
WHERE o.message_id = u.message_id AND o.attempts = u.attempts AND o.claimed_by = $4
RETURNING o.message_id
"""
# An interrupted attempt's row the log cannot settle yet: due again later, the claim's
# attempt not counted, still unsettled; only while still this claim's (as UNLEASE).
PUT_OFF = """
UPDATE outbox SET next_attempt_at = now() + $3::interval, attempts = attempts - 1,
                  claimed_by = NULL
WHERE message_id = $1 AND attempts = $2
"""
# The claims holding leased rows, and the rows of those dead made due: their leases end
# now. $1: processes gone (.claimants), none of whose submits is under way any more; $2:
# tokens no session holds (.claimtoken), whose rows being submitted wait (SENDING).
CLAIMANTS = """
SELECT DISTINCT claimed_by FROM outbox
WHERE claimed_by IS NOT NULL AND next_attempt_at > now()
"""
RECLAIM = """
UPDATE outbox SET next_attempt_at = now(), claimed_by = NULL
WHERE next_attempt_at > now()
  AND (claimed_by = ANY($1::text[])
       OR claimed_by = ANY($2::text[]) AND (sending_until IS NULL OR sending_until <= now()))
"""

BATCH = 10
LEASE = dt.timedelta(minutes=15)  # renewed while a batch is worked on (BatchLease)
POLL_SECONDS = 1.0
UNREACHABLE_PAUSE_MAX = 60.0
SMTP_TIMEOUT = 60.0
# The longest one submit may take: the end of DATA's wait, and two SMTP timeouts for
# the rest (a Postfix on loopback answers the rest in milliseconds).
SUBMIT_SECONDS = DATA_END_SECONDS + 2 * SMTP_TIMEOUT
# What the lease must last beyond a submit's bound when it starts: closing the
# connection after an overrun, and clocks (Postgres's, ours) that drift apart.
LEASE_MARGIN_SECONDS = QUIT_SECONDS + 30.0
RECORD_RETRY_MIN, RECORD_RETRY_MAX = 0.5, 10.0
# How often the claims of other processes are looked at (and at the start): a dead
# one's rows are due then, not when their lease ends.
RECLAIM_SECONDS = 60.0
# How long a row's mark as being submitted lasts (SENDING), renewed while the submit
# runs (.mark): a relay killed mid-submit holds its row this long. Its submit is cut off
# SENDING_MARGIN_SECONDS before the mark could end unrenewed (clocks, a busy loop).
SENDING_SECONDS = 60.0
SENDING_MARGIN_SECONDS = 20.0
GIVE_BACK_SECONDS = 5.0  # a stop waits this long at most to give back rows not tried
# How long a stop lets each task finish its message before cancelling it.
STOP_GRACE_SECONDS = 30.0
# The outcome of a row back past its last attempt, that attempt unanswered, when
# nothing shows Postfix queued the message (its log, where there is one, does not).
UNANSWERED_LAST = SubmitResult(Outcome.FAILED, "no answer to the message sent in the last "
                               "attempt, and nothing shows Postfix queued it")


def submit_span() -> float:
    """How much longer the lease must last when a submit starts (read at each use)."""
    return SUBMIT_SECONDS + LEASE_MARGIN_SECONDS


def _left_to_another(row: Claimed) -> None:
    log.warning("relay: message %s was claimed again while this worker was held up: "
                "leaving it to that claim", row.id)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set, for ``seconds`` at most."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        pass


def _queued_as(result: SubmitResult) -> str:
    """For a log line: the queue id Postfix gave the message (its log and mailq show it
    by that), if it took it."""
    return f", Postfix queue id {result.queue_id}" if result.queue_id else ""

class RelayWorker:
    """``workers`` tasks, each with its own SMTP session; ``wake()`` after an enqueue."""

    def __init__(self, pool: asyncpg.Pool, config: RelayConfig,
                 maillog: MaillogFollower | None = None, metrics: Metrics | None = None,
                 queue: PostfixQueue | None = None) -> None:
        """``maillog``: the follower of Postfix's log (None without one); unsettled
        rows are settled from what it read, and from what ``queue`` lists (the same
        Postfix's; None: not listed)."""
        self._pool = pool
        self._config = config
        self._maillog = maillog
        self._queue_host = maillog.host if maillog is not None else None
        # A stop left an attempt whose outcome it did not store: Postfix may log it yet
        # (the maillog follower's last read waits a moment for it: .maillog).
        self.cut_off = False
        # Where this relay's attempts are logged, and by which reader (.interrupted).
        self._attempt_log = (None, None) if maillog is None else (maillog.key,
                                                                  maillog.instance)
        self._claimants = Claimants()
        self._token = ClaimToken(pool, self._claimants.me)
        metrics = metrics or Metrics()
        self._outcomes = metrics.relay_outcomes
        self._put_off_rows = metrics.relay_put_off
        self._interrupted = InterruptedAttempts(pool, maillog, queue)
        # Postfix's 250s: those that come while one is being stored go together next.
        self._relayed = GroupCommit(self._store_relayed)
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._unreachable = Unreachable(self._pause_seconds)  # the workers' pause, shared
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name=f"postwarden-relay-{n}")
            for n in range(self._config.workers)
        ]
        self._tasks.append(asyncio.create_task(self._reclaim(),
                                               name="postwarden-relay-reclaim"))

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Let each task finish its current message, then cancel what is left (``cut_off``):
        a batch cancelled gives back its rows not yet sent."""
        self._stopping.set()
        self._wakeup.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            self.cut_off = self.cut_off or bool(pending)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._token.close()

    async def _claim(self) -> list[Claimed]:
        if not await self._token.held():  # rows claimed now might be taken at once
            return []
        async with pooled(self._pool) as conn:
            rows = await conn.fetch(CLAIM, BATCH, LEASE, *self._attempt_log,
                                    self._config.max_attempts, self._claimants.me)
        return [Claimed(r["message_id"], r["envelope_from"], list(r["recipients"]),
                        r["content"], r["attempts"], r["interrupted"], r["attempt_log"],
                        r["attempt_by"]) for r in rows]

    async def _run(self) -> None:
        session = SmtpSession(
            self._config.host, self._config.port, SMTP_TIMEOUT, socket.getfqdn()
        )
        try:
            while not self._stopping.is_set():
                await self._unreachable.paused(self._stopping)  # no claim while it lasts
                relayed = False
                with surviving("relay worker"):
                    step = self._unreachable.step
                    claimed = time.monotonic()
                    rows = await self._claim()
                    if rows:
                        await self._relay(session, rows, claimed, step)
                        relayed = True
                if not relayed:  # nothing to do, or it failed: pause before the next claim
                    await self._idle()
        finally:
            await session.close()

    async def _reclaim(self) -> None:
        """Make due the rows of claims dead, now and every RECLAIM_SECONDS."""
        while not self._stopping.is_set():
            with surviving("relay: reclaiming rows of a process gone"):
                await self._reclaim_gone()
            await _wait(self._stopping, RECLAIM_SECONDS)

    async def _reclaim_gone(self) -> None:
        async with pooled(self._pool) as conn, conn.transaction():
            names = [r["claimed_by"] for r in await conn.fetch(CLAIMANTS)]
            gone = self._claimants.gone(names)
            dead = await unheld(conn, self._claimants.tokens(names))
            if not gone and not dead:
                return
            reclaimed = await conn.execute(RECLAIM, gone, dead)
        count = int(reclaimed.rsplit(" ", 1)[1])
        if count:
            log.warning("relay: %d message(s) whose claimant is gone (its process, or its "
                        "claim token's session) are due again (those it may have sent: "
                        "Postfix's log decides)", count)
            self.wake()

    def _pause_seconds(self, unreached: int) -> float:
        """How long to wait before trying an unreachable Postfix again."""
        return min(backoff(self._config, unreached).total_seconds(), UNREACHABLE_PAUSE_MAX)

    async def _idle(self) -> None:
        self._wakeup.clear()
        await _wait(self._wakeup, POLL_SECONDS)

    async def _relay(self, session: SmtpSession, rows: list[Claimed], claimed: float,
                     step: int) -> None:
        """Submit the rows in turn, claimed at ``claimed`` (monotonic) in the pause step
        ``step``; when Postfix cannot be reached, the row being tried and those after it
        are given back."""
        lease = BatchLease(self._renew, rows, since=claimed, seconds=LEASE.total_seconds(),
                           retry_seconds=RECORD_RETRY_MAX, keep=submit_span())
        untried = rows  # none of them sent yet: given back should the task be cancelled
        try:
            for index, row in enumerate(rows):
                untried = rows[index:]
                # A pause begun since the claim (another worker's try failed): the rows
                # left wait for it, as they would have had they been claimed after it.
                if self._stopping.is_set() or self._unreachable.step != step:
                    await self._give_back(lease, rows[index:])
                    return
                if not lease.proven():
                    await self._unproven(lease, rows[index:])
                    return
                if row.id in lease.lost:
                    _left_to_another(row)
                    continue
                commit = await self._interrupted.queued(row) if row.interrupted else None
                if isinstance(commit, Undecided):
                    if commit.reason is not None:
                        self._put_off_rows.labels(commit.reason).inc()
                    await lease.settle(row)
                    await self._put_off(row, commit.recheck)
                    continue
                found = commit is not None
                if commit is not None:
                    result = found_answer(commit)
                elif row.interrupted and row.attempts > self._config.max_attempts:
                    result = UNANSWERED_LAST  # its attempts are spent: not sent again
                else:
                    # Checked last: the log's answer above may take a while.
                    mark = self._mark(row)
                    cleared = await self._cleared(lease, row, mark)
                    if cleared is Fenced.UNPROVEN:
                        await self._unproven(lease, rows[index:])
                        return
                    if cleared is Fenced.LOST:
                        await lease.settle(row)
                        _left_to_another(row)
                        continue
                    untried = rows[index + 1:]
                    result = await self._submit(session, row, mark)
                    if result.outcome is not Outcome.UNREACHABLE:
                        self._unreachable.reached()
                if result.outcome is Outcome.UNREACHABLE:
                    # The pause first: no worker claims the rows given back before it.
                    self._unreached(result, step, len(rows) - index)
                    await self._give_back(lease, rows[index:])
                    return
                await lease.settle(row)
                outcome = await self._record(row, result, found_in_log=found,
                                             queue_host=None if commit is None else commit.host)
                if outcome is not None:
                    self._outcomes.labels("found_queued" if found else outcome).inc()
        except BaseException:  # cancelled, or a query cut off (Postgres restarting)
            await self._give_back_untried(lease, untried)
            raise
        finally:
            await lease.stop()

    def _unreached(self, result: SubmitResult, step: int, waiting: int) -> None:
        """Count a try that found Postfix unreachable; the one that starts a pause step
        says so (the workers' other tries of the step add nothing to it)."""
        self._outcomes.labels("unreachable").inc()
        seconds = self._unreachable.failed(step)
        if seconds is not None:
            log.warning("relay: Postfix at %s:%d cannot be reached (%s); %d claimed "
                        "message(s) wait in the outbox, trying again in %.3g s",
                        self._config.host, self._config.port, result.reply, waiting, seconds)

    async def _give_back_untried(self, lease: BatchLease[Claimed], rows: list[Claimed]
                                 ) -> None:
        """Cancelled (a stop past its grace) or failed: the rows not yet sent go back as
        they were. Left claimed, they would come back only when their lease ends, as
        attempts cut off, as though sent unanswered: one at its last attempt failed,
        never sent."""
        if not rows:
            return
        try:
            async with asyncio.timeout(GIVE_BACK_SECONDS):
                await self._give_back(lease, rows)
        except DB_ERRORS as exc:
            log.warning("relay: %d claimed message(s) not tried could not be given back "
                        "at the stop (%s): they come back when their lease ends", len(rows),
                        type(exc).__name__)

    @staticmethod
    async def _submit(session: SmtpSession, row: Claimed, mark: SendingMark) -> SubmitResult:
        """Postfix's answer within SUBMIT_SECONDS, while ``mark`` lasts; past either, the
        connection is aborted and the answer taken as lost after the message went out (it
        may have)."""
        deadline = asyncio.timeout(SUBMIT_SECONDS)
        try:
            async with deadline, mark.kept(deadline):
                return await session.submit(row.envelope_from, row.recipients, row.content)
        except TimeoutError:
            if not deadline.expired():
                raise
        await session.close()  # its connection's state is unknown
        if mark.lapsed():
            log.warning("relay: submitting message %s was cut off: its mark as being "
                        "submitted could not be renewed in time (the claim token's "
                        "connection lost?); Postfix's log decides whether it was queued",
                        row.id)
            return SubmitResult(Outcome.RETRY, "no answer before the claim could no longer "
                                "be proven", uncertain=True)
        log.warning("relay: submitting message %s took over %g s: cut off, Postfix's log "
                    "decides whether it was queued", row.id, SUBMIT_SECONDS)
        return SubmitResult(Outcome.RETRY, f"no answer within {SUBMIT_SECONDS:g} s",
                            uncertain=True)

    async def _unproven(self, lease: BatchLease[Claimed], rows: list[Claimed]) -> None:
        log.warning("relay: the lease of %d claimed message(s) cannot be proven (not "
                    "renewed in time, or the claim token not held): giving them back unsent",
                    len(rows))
        await self._give_back(lease, rows)

    async def _give_back(self, lease: BatchLease[Claimed], rows: list[Claimed]) -> None:
        await lease.release()
        await self._unlease(rows)

    async def _unlease(self, rows: list[Claimed]) -> None:
        async with pooled(self._pool) as conn:
            await conn.execute(UNLEASE, [r.id for r in rows], [r.interrupted for r in rows],
                               [r.attempts for r in rows])

    async def _renew(self, rows: list[Claimed]) -> set[uuid.UUID]:
        """Extend the lease of the rows still this claim's; the others (lost)."""
        async with pooled(self._pool) as conn:
            kept = await conn.fetch(RENEW, [r.id for r in rows], [r.attempts for r in rows],
                                    LEASE, self._token.name)
        return {r.id for r in rows} - {k["message_id"] for k in kept}

    async def _put_off(self, row: Claimed, recheck: dt.timedelta) -> None:
        async with pooled(self._pool) as conn:
            await conn.execute(PUT_OFF, row.id, row.attempts, recheck)

    def _mark(self, row: Claimed) -> SendingMark:
        """``row``'s mark as being submitted; with the log to ask should this attempt be
        cut off (CLAIM)."""
        noted = row.interrupted or row.attempts >= self._config.max_attempts
        return SendingMark(functools.partial(
            self._token.fence, SENDING, row.id, row.attempts, self._token.name,
            dt.timedelta(seconds=SENDING_SECONDS), noted, *self._attempt_log),
            seconds=SENDING_SECONDS, margin=SENDING_MARGIN_SECONDS)

    async def _cleared(self, lease: BatchLease[Claimed], row: Claimed, mark: SendingMark
                       ) -> Fenced:
        """Whether ``row`` may be submitted now: its lease lasts as long as the submit may,
        and it is marked as being submitted on the claim token's connection."""
        if not await lease.covers(submit_span()):
            return Fenced.UNPROVEN
        if row.id in lease.lost:  # its renewal just now found it claimed
            return Fenced.LOST
        return await mark.make()

    async def _store_relayed(self, outcomes: list[Relayed]) -> None:
        async with pooled(self._pool) as conn:
            await store_relayed(conn, outcomes, self._queue_host)

    async def _record(self, row: Claimed, result: SubmitResult, *,
                      found_in_log: bool, queue_host: str | None) -> str | None:
        """Store Postfix's answer, trying again while Postgres fails; only a stop, a
        message no longer stored, or a 4xx or 5xx whose row another claim took meanwhile
        gives up (None)."""
        delay = RECORD_RETRY_MIN
        while True:
            try:
                if result.outcome is Outcome.QUEUED:
                    await self._relayed(Relayed(row, result, found_in_log, queue_host))
                    return "relayed"
                async with pooled(self._pool) as conn:
                    outcome = await record(conn, self._config, row, result,
                                           found_in_log=found_in_log,
                                           queue_host=self._queue_host)
                if outcome is None and not await self._no_longer_stored(row, result):
                    _left_to_another(row)
                return outcome
            except DB_ERRORS as exc:
                # The one error trying again cannot mend: its message's rows are gone. Under
                # a group commit, the others stored with it get it too, and try again.
                if isinstance(exc, asyncpg.ForeignKeyViolationError) \
                        and await self._no_longer_stored(row, result):
                    return None
                if self._stopping.is_set():
                    self.cut_off = True
                    log.error("relay: stopping without storing the outcome of message %s "
                              "(%s%s): when its lease ends, Postfix's log decides whether "
                              "it is sent again", row.id, database_problem(exc),
                              _queued_as(result))
                    return None
                log.warning("relay: cannot store the outcome of message %s (%s%s), trying "
                            "again in %.1f s", row.id, database_problem(exc),
                            _queued_as(result), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECORD_RETRY_MAX)

    async def _no_longer_stored(self, row: Claimed, result: SubmitResult) -> bool:
        """Whether ``row``'s message is gone from the database, logged if so: a PostgreSQL
        crash with synchronous_commit off loses commits it had shown, such as the one that
        stored a message the relay then claimed. Unsure (the database fails): False."""
        try:
            async with pooled(self._pool) as conn:
                if await conn.fetchval(STORED, row.id):
                    return False
        except DB_ERRORS:
            return False
        log.error("relay: message %s is no longer stored (a lost commit?); Postfix's answer "
                  "(%s, queue id %s) cannot be recorded", row.id, result.outcome.value,
                  result.queue_id)
        self._outcomes.labels("lost").inc()
        return True
