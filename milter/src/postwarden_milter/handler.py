"""What each milter callback does, independent of pymilter.

A :class:`ConnectionHandler` lives as long as one SMTP connection and holds at
most one :class:`Transaction`. Every callback that answers is guarded (abort and
close answer nothing, and end the transaction whatever fails): an exception or a
missed end-of-message deadline answers the configured fail action (tempfail
``451 4.3.0`` by default), is logged with the queue id and counted. Steps the
MTA does not wait for (helo, DATA, header and body are negotiated as "no reply")
remember a failure and the next step that replies answers it.

A message up to :data:`INLINE_BYTES` is parsed and evaluated on the callback's
thread: handing it to another thread and back cost a fifth of the milter's CPU
per small message (thread switches under the GIL), and its worst case is a
fraction of a second, so it needs no progress replies, and a verdict later than
the deadline still answers the fail action. Its HTML parts cleaned in child
processes get :data:`INLINE_CHILD_SECONDS` in all (a part past it becomes a
notice, as one past the sanitizer's own limit). A larger one goes to a worker pool,
so that this thread can send progress replies while it waits and give up at the
deadline. (The callback's thread is libmilter's, with a thread state pymilter
made: nh3's calls back into Python must not run there, see
``postwarden_policies.sanitize``.)
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, Protocol

from postwarden_policies import (
    AuditEvent,
    Envelope,
    MessageFacts,
    PolicySet,
    Reply,
    SmtpReply,
    Verdict,
    evaluate,
    parse_message,
)
from postwarden_policies.render import change_type
from postwarden_policies.sanitize import DEADLINE as SANITIZE_DEADLINE

from .apply import Applied, MessageEdits, MilterActions, Outcome, apply_verdict, fail, reply_with
from .duplicates import DuplicateDetector
from .errors import MessageTimeout
from .events import build_event
from .logcontext import set_message_context
from .metrics import Metrics
from .reload import PolicyHolder
from .session import Client, InFlight, Slots, Transaction, esmtp_size, strip_brackets
from .settings import MilterSettings

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 5.0  # well under Postfix's milter_content_timeout (300 s)
# Larger messages are decided on the worker pool (module docstring). The slowest
# message known of this size takes ~0.17 s (bench/policy_eval.py, "worst known").
INLINE_BYTES = 256 * 1024
# What HTML parts the sanitizer cleans in child processes get, all together, in a
# message decided here: this thread sends no progress replies while it waits.
INLINE_CHILD_SECONDS = PROGRESS_SECONDS
# Answers after which the client holds the message as delivered (250; a discarded
# message too): sent again, it is a re-delivery. After a 4xx or 5xx it is not.
DELIVERED = frozenset({Outcome.CONTINUE, Outcome.ACCEPT, Outcome.DISCARD})
# The flag of an aborted row whose transaction a stop's deadline cut (README, Stopping).
STOP_DEADLINE = "stop_deadline"
# The connection Postfix's cleanup makes up for mail submitted with sendmail(1): port 0,
# which no SMTP client has (smtpd gives 0 for an unknown port, but then a real address).
LOCAL_SUBMISSION = ("localhost", "127.0.0.1", 0)
P = ParamSpec("P")
Decided = tuple[MessageFacts, Verdict, bytes | None]  # and the duplicate key, if any


class AuditSink(Protocol):
    def submit(self, event: AuditEvent) -> None: ...

    @property
    def refusing_mail(self) -> bool: ...


class MacroSource(Protocol):
    def getsymval(self, sym: str) -> str | None: ...


class Actions(MilterActions, MacroSource, Protocol):
    pass


class OpenTransactions:
    """The connections holding a transaction open: what a stop waits for, and what its
    deadline cuts. Once closed (the stop has begun) none is admitted, so a session
    sending message after message cannot hold the stop up to its deadline."""

    def __init__(self) -> None:
        self._holders: set[ConnectionHandler] = set()
        self._closed = False
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        return len(self._holders)

    def admit(self, holder: ConnectionHandler) -> bool:
        """Count ``holder``'s new transaction; False once closed."""
        with self._lock:
            if self._closed:
                return False
            self._holders.add(holder)
            return True

    def release(self, holder: ConnectionHandler) -> None:
        with self._lock:
            self._holders.discard(holder)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def cut(self) -> int:
        """Audit each as aborted by the stop's deadline and forget it; how many."""
        with self._lock:
            holders = list(self._holders)
        return sum(holder.cut() for holder in holders)


@dataclass(frozen=True)
class Services:
    """Everything the callbacks share across connections."""

    settings: MilterSettings
    policies: PolicyHolder
    audit: AuditSink
    metrics: Metrics
    duplicates: DuplicateDetector
    slots: Slots  # connections, up to max_concurrency
    workers: concurrent.futures.ThreadPoolExecutor
    transactions: OpenTransactions = dataclasses.field(default_factory=OpenTransactions)
    callbacks: InFlight = dataclasses.field(default_factory=InFlight)  # running, for a stop


def guarded(
    kind: str, replies: bool = True
) -> Callable[
    [Callable[Concatenate[ConnectionHandler, P], Outcome]],
    Callable[Concatenate[ConnectionHandler, P], Outcome],
]:
    """Turn any exception into the fail action (or a pending failure for no-reply steps)."""

    def wrap(
        method: Callable[Concatenate[ConnectionHandler, P], Outcome],
    ) -> Callable[Concatenate[ConnectionHandler, P], Outcome]:
        def run(self: ConnectionHandler, /, *args: P.args, **kwargs: P.kwargs) -> Outcome:
            self.enter()
            try:
                if replies and self.pending_failure is not None:
                    return self.fail(self.pending_failure)
                return method(self, *args, **kwargs)
            except MessageTimeout:
                return self.fail("timeout")
            except Exception:
                log.exception("internal error in the %s callback", kind)
                if replies:
                    return self.fail(kind)
                self.pending_failure = kind
                return Outcome.CONTINUE

        functools.update_wrapper(run, method)
        return run

    return wrap


class ConnectionHandler:
    def __init__(self, services: Services, actions: Actions) -> None:
        self._s = services
        self._actions = actions
        self._client = Client()
        self._txn: Transaction | None = None
        self._txn_lock = threading.Lock()  # a stop's deadline may end it from its thread
        self._has_slot = False
        self.leading_space = False  # set once the protocol is negotiated
        self.pending_failure: str | None = None

    # --- plumbing --------------------------------------------------------------

    def enter(self) -> None:
        txn = self._txn
        set_message_context(txn.queue_id if txn else None, txn.uid if txn else None)

    def _macro(self, name: str) -> str | None:
        value = self._actions.getsymval(name)
        return value or None

    def fail(self, kind: str) -> Outcome:
        """Answer an internal failure; the reply is always set before returning."""
        self._s.metrics.errors.labels(kind).inc()
        applied = fail(self._actions, self._s.settings.fail_action)
        log.error("%s: answering %s", kind, applied.reply or applied.outcome.value)
        self._finish("error", applied.reply)
        self.pending_failure = None
        return applied.outcome

    def _finish(self, action: str, reply: SmtpReply | None,
                facts: MessageFacts | None = None, verdict: Verdict | None = None,
                flags: frozenset[str] = frozenset()) -> bool:
        """Audit the transaction (if one is open) and forget it; False when none was
        (or a stop's deadline cut it meanwhile, and audited it)."""
        with self._txn_lock:
            txn, self._txn = self._txn, None
        if txn is None:
            return False
        policy_hash = verdict.policy_hash if verdict else self._s.policies.current.content_hash
        try:
            log_verdict(action, txn, reply, verdict)
            self._s.metrics.messages.labels(action).inc()
            self._s.audit.submit(build_event(
                instance=self._s.settings.instance_name, transaction=txn, client=self._client,
                action=action, reply=reply, facts=facts, verdict=verdict, policy_hash=policy_hash,
                flags=flags,
            ))
        finally:
            txn.close()
            self._s.transactions.release(self)
        return True

    def _refuse(self, reply: Reply, action: str) -> Outcome:
        """Refuse before end of message; the audit row still names the message."""
        txn = self._txn
        if txn is not None:
            # Postfix knows the queue id only once a recipient was accepted (DATA macros).
            txn.queue_id = txn.queue_id or self._macro("i")
            self.enter()
        applied = reply_with(self._actions, reply)
        self._finish(action, applied.reply, self._header_facts())
        return applied.outcome

    def _abandon(self, flags: frozenset[str] = frozenset()) -> bool:
        """Audit an unfinished transaction (if one is open) as aborted, and forget it."""
        try:
            facts = self._header_facts()
        except Exception:  # abort() is unguarded: the row goes without them, the txn still ends
            log.exception("cannot parse the headers of an aborted transaction")
            facts = None
        return self._finish("aborted", None, facts, flags=flags)

    def cut(self) -> bool:
        """A stop's deadline ends the open transaction (on the stop's thread, before it
        hangs the connection up, which no callback then answers): its row says aborted,
        flagged stop_deadline. False when none was open."""
        # In the message's context (a copy: the stop's own lines keep theirs).
        return contextvars.copy_context().run(self._cut)

    def _cut(self) -> bool:
        self.enter()
        return self._abandon(frozenset({STOP_DEADLINE}))

    def _header_facts(self) -> MessageFacts | None:
        """For a transaction ended before its verdict: the headers received so far (those
        within the first 64 KiB, and a later From, Subject and Message-ID: see
        Transaction.leading_headers), parsed alone, so its audit row names them."""
        txn = self._txn
        if txn is None or not txn.header_bytes:
            return None
        return parse_message(txn.leading_headers() + b"\r\n", txn.envelope(self._client),
                             header_only=True)

    # --- callbacks ---------------------------------------------------------------

    @guarded("connect")
    def connect(self, hostname: str, address: str | None, port: int | None = None) -> Outcome:
        if not self._s.slots.acquire():
            self._s.metrics.errors.labels("overload").inc()
            log.warning("overloaded (%d connections): refusing %s", self._s.slots.active, address)
            return reply_with(self._actions, Reply.OVERLOADED).outcome
        self._has_slot = True
        self._s.metrics.connections.inc()
        # No socket address (a family libmilter does not pass on): the macro may have one.
        self._client = Client(address=address or self._macro("{client_addr}"), name=hostname,
                              local=(hostname, address, port) == LOCAL_SUBMISSION)
        return Outcome.CONTINUE

    @guarded("helo", replies=False)
    def helo(self, name: str) -> Outcome:
        self._client.helo = name
        return Outcome.CONTINUE

    @guarded("envfrom")
    def mail(self, sender: str, params: tuple[str, ...]) -> Outcome:
        self._abandon()  # a new MAIL FROM ends an unfinished transaction
        policy_set = self._s.policies.current
        txn = Transaction(
            sender=strip_brackets(sender),
            auth_user=self._macro("{auth_authen}"),
            memory_threshold=self._s.settings.body_memory_threshold,
            max_bytes=policy_set.limits.max_message_bytes,
            queue_id=self._macro("i"),
        )
        set_message_context(txn.queue_id, txn.uid)
        if self._s.audit.refusing_mail:
            # No audit row: it could not be stored, and refusals must not grow the spool.
            # Counted as a refusal, as overload is: no audit event was lost.
            txn.close()
            self._s.metrics.errors.labels("spool_full").inc()
            log.warning("audit spool full: tempfailing new mail")
            return reply_with(self._actions, Reply.INTERNAL_ERROR).outcome
        self._txn = txn  # first: a stop's deadline may cut it once admitted
        if not self._s.transactions.admit(self):
            # No audit row either (the queue is draining). On 421 Postfix ends the SMTP
            # session: the client comes back later, to a milter that is running.
            self._txn = None
            txn.close()
            log.info("stopping: refusing a new transaction")
            return reply_with(self._actions, Reply.OVERLOADED).outcome
        declared = esmtp_size(params)
        if declared is not None and not self._txn.fits(declared):
            return self._refuse(Reply.MESSAGE_TOO_BIG, "reject")
        return Outcome.CONTINUE

    @guarded("envrcpt")
    def rcpt(self, recipient: str, params: tuple[str, ...]) -> Outcome:
        txn = self._require()
        txn.queue_id = txn.queue_id or self._macro("i")
        # Refusing a recipient of a local submission, Postfix defers the whole message
        # ("milter configuration error"), and pickup retries it forever: keep them all,
        # end of message refuses the message past the limit.
        limit = None if self._client.local else self._s.policies.current.max_recipients
        if not txn.add_recipient(recipient, params, limit):
            return reply_with(self._actions, Reply.TOO_MANY_RECIPIENTS).outcome
        return Outcome.CONTINUE

    @guarded("data", replies=False)
    def data(self) -> Outcome:
        # Postfix names the queue id from the first accepted RCPT on, but sends it at
        # RCPT only from the second: with one recipient, DATA is the first step that
        # brings it, and a message aborted before end of message is audited under it.
        txn = self._require()
        if txn.queue_id is None:
            txn.queue_id = self._macro("i")
            self.enter()  # the log context too, for the rest of the transaction
        return Outcome.CONTINUE

    @guarded("header", replies=False)
    def header(self, name: str, value: bytes) -> Outcome:
        self._require().add_header(name, value, self.leading_space)
        return Outcome.CONTINUE

    @guarded("body", replies=False)
    def body(self, chunk: bytes) -> Outcome:
        # Postfix streams the body without waiting for an answer per chunk (a
        # 2 MB message is 32 round trips fewer); a body past the size limit
        # stops being stored here and is refused at end of message, which is
        # when the SMTP client hears any answer to DATA anyway.
        txn = self._require()
        spilled = txn.spilled
        txn.add_body(chunk)
        if txn.spilled and not spilled:
            self._s.metrics.bodies_spilled.inc()
        return Outcome.CONTINUE

    @guarded("eom")
    def eom(self) -> Outcome:
        txn = self._require()
        txn.queue_id = self._macro("i") or txn.queue_id
        self.enter()
        if not txn.within_limit:
            return self._refuse(Reply.MESSAGE_TOO_BIG, "reject")
        policy_set = self._s.policies.current
        most = policy_set.max_recipients
        if self._client.local and most is not None and len(txn.recipients) > most:
            return self._refuse(Reply.TOO_MANY_LOCAL_RECIPIENTS, "reject")
        with self._s.metrics.latency.time():
            facts, verdict, key = self._decision(policy_set, txn)
            applied = apply_verdict(self._actions, verdict, MessageEdits(
                uid=txn.uid, id_header=self._s.settings.id_header,
                header_counts=txn.header_names, recipients=txn.recipients,
                leading_space=self.leading_space,
            ))
        reported = self._report(verdict, applied, facts)
        # Not once a stop's deadline cut the transaction (its row says aborted): the
        # connection is hung up, and the MTA applies milter_default_action.
        if reported and key is not None and applied.outcome in DELIVERED:
            duplicates = self._s.duplicates
            # With the id it carries from now on, if any (see _rescan): under one lock.
            issued = [duplicates.issued_key(txn.uid)] if self._s.settings.id_header else []
            duplicates.record(key, *issued)
        return applied.outcome

    def abort(self) -> Outcome:
        self.enter()
        self._abandon()
        self.pending_failure = None
        return Outcome.CONTINUE

    def close(self) -> Outcome:
        self.abort()
        if self._has_slot:
            self._has_slot = False
            self._s.slots.release()
            self._s.metrics.connections.dec()
        return Outcome.CONTINUE

    # --- end of message ----------------------------------------------------------

    def _require(self) -> Transaction:
        if self._txn is None:
            raise RuntimeError("message callback outside a transaction")
        return self._txn

    def _decide(self, policy_set: PolicySet, raw: bytes, envelope: Envelope) -> Decided:
        """Parse, look re-deliveries up, evaluate.

        The duplicate key is only looked up here; eom records it once the verdict
        delivered the message, so that the retry of a refused one is no re-delivery.
        """
        facts = parse_message(raw, envelope, max_parts=policy_set.max_mime_parts,
                              max_depth=policy_set.max_mime_depth)
        duplicates = self._s.duplicates
        key = duplicates.key(facts.message_id, envelope.sender, envelope.recipients,
                             memoryview(raw)[facts.body_offset:])
        if key is not None and duplicates.seen(key) and not self._rescan(facts):
            facts = dataclasses.replace(facts, duplicate=True)
        return facts, evaluate(policy_set, facts), key

    def _rescan(self, facts: MessageFacts) -> bool:
        """The message carries an id this milter wrote into a message it delivered: it is
        that message passing it again (the milter listed twice, or re-injected by a
        content_filter into an smtpd that runs it), not a sender's re-delivery. Any other
        value of the header (forged, or another site's) counts for nothing."""
        name = self._s.settings.id_header.lower()
        duplicates = self._s.duplicates
        return bool(name) and any(
            duplicates.seen(duplicates.issued_key(h.raw_value.strip()))
            for h in facts.headers if h.name.lower() == name)

    def _decision(self, policy_set: PolicySet, txn: Transaction) -> Decided:
        """:meth:`_decide` within the deadline, here or on the pool (module docstring).

        The deadline covers our own processing from end of message: a slow client
        sending a large body must not turn into a tempfail.
        """
        deadline = time.monotonic() + self._s.settings.message_timeout_seconds
        raw, envelope = txn.raw_message(), txn.envelope(self._client)
        inline = len(raw) <= INLINE_BYTES
        # A sanitizer child working past the deadline would work for nobody. Here,
        # with no progress replies, its parts get INLINE_CHILD_SECONDS in all.
        token = SANITIZE_DEADLINE.set(
            min(deadline, time.monotonic() + INLINE_CHILD_SECONDS) if inline else deadline)
        try:
            if not inline:
                # In this thread's context, so that the pool thread logs with the
                # message's ids (and sees the deadline).
                job = self._s.workers.submit(
                    contextvars.copy_context().run, self._decide, policy_set, raw, envelope)
                return self._wait(job, deadline)
            decision = self._decide(policy_set, raw, envelope)
        finally:
            SANITIZE_DEADLINE.reset(token)
        if time.monotonic() > deadline:
            raise self._too_late()
        return decision

    def _wait(self, job: concurrent.futures.Future[Decided], deadline: float) -> Decided:
        """The pool's verdict by ``deadline``, with progress replies while it is worked out."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                job.cancel()
                raise self._too_late()
            try:
                return job.result(timeout=min(PROGRESS_SECONDS, remaining))
            except concurrent.futures.TimeoutError:
                self._actions.progress()

    def _too_late(self) -> MessageTimeout:
        return MessageTimeout(f"no verdict within {self._s.settings.message_timeout_seconds:g} s")

    def _report(self, verdict: Verdict, applied: Applied, facts: MessageFacts) -> bool:
        metrics = self._s.metrics
        for rule in verdict.rules:
            metrics.rules.labels(rule).inc()
        action = verdict.action.value
        if facts.duplicate:
            log.info("re-delivery of message-id %s", facts.message_id)
        return self._finish(action, applied.reply, facts, verdict)


def log_verdict(action: str, txn: Transaction, reply: SmtpReply | None,
                verdict: Verdict | None) -> None:
    """The one line of each audited transaction, the same fields whether the policies,
    a limit, an error or an abort ended it (the queue id and our id ride in the
    context): grep finds it by either id, a script reads its fields by name (the reply,
    with spaces, comes last)."""
    rules = ",".join(verdict.rules) if verdict else ""
    changes = ",".join(change_type(c) for c in verdict.changes) if verdict else ""
    log.info("%s from=<%s> nrcpt=%d rules=%s changes=%s reply=%s", action, txn.sender,
             len(txn.recipients), rules or "-", changes or "-", reply or "-")
