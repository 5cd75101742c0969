"""What each milter callback does, independent of pymilter.

A :class:`ConnectionHandler` lives as long as one SMTP connection and holds at
most one :class:`Transaction`, and with it, once its content comes, one of the
``max_concurrency`` slots (session.Slots: while they are all taken a new MAIL FROM
gets a cheap ``421 4.3.2``), given back wherever the transaction ends (end of message,
abort, a new MAIL FROM, close, a failure, a stop's deadline: all through ``_finish``),
so neither a session idle between transactions nor a slow client's envelope holds
one. Every callback that answers is guarded (abort and close answer nothing, and end
the transaction whatever fails): an exception or a missed end-of-message deadline
answers the configured fail action (tempfail ``451 4.3.0`` by default; at RCPT, to
that recipient alone), is logged with the queue id and counted. Steps the
MTA does not wait for (helo, DATA, header and body are negotiated as "no reply")
remember a failure and the next step that replies answers it. End of message
gets its verdict from a :class:`~.decider.Decider`, here or on the worker pool.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
import re
import threading
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol

from postwarden_policies import (
    Action,
    MessageFacts,
    PolicySet,
    Quarantine,
    Reject,
    Reply,
    SmtpReply,
    Verdict,
    parse_message,
)
from postwarden_policies.engine import INTERNAL_ERROR
from postwarden_policies.facts import verified_name
from postwarden_policies.model import Limits
from postwarden_policies.redact import escape_matches
from postwarden_policies.render import change_type

from .apply import Applied, MessageEdits, MilterActions, Outcome, apply_verdict, fail, reply_with
from .errors import MessageTimeout
from .events import build_event
from .localretries import RETRIES_EXHAUSTED
from .logcontext import set_message_context
from .services import Services
from .session import Client, Transaction, esmtp_param, esmtp_size, strip_brackets
from .settings import FailAction

log = logging.getLogger(__name__)

# Answers after which the client holds the message as delivered (250; a discarded
# message too): sent again, it is a re-delivery. After a 4xx or 5xx it is not.
DELIVERED = frozenset({Outcome.CONTINUE, Outcome.ACCEPT, Outcome.DISCARD})
# The flag of an aborted row whose transaction a stop's deadline cut (README, Stopping).
STOP_DEADLINE = "stop_deadline"
# The audit flag of content refused past max_concurrency.
OVERLOADED = frozenset({"overloaded"})
# What the refusals' lines said once a minute count (postwarden_policies.occasional),
# as the stop names them.
REFUSED_SPOOL_FULL = "MAIL FROM refused (audit spool full)"
REFUSED_UNSTORABLE = "messages refused (audit event neither stored nor queued)"
REFUSED_OVERLOADED = "MAIL FROM refused (overloaded)"
REFUSED_STOPPING = "MAIL FROM refused (stopping)"
# The connection Postfix's cleanup makes up for mail submitted with sendmail(1): port 0,
# from ::1 where inet_protocols puts IPv6 first (ipv6 alone), else from 127.0.0.1. smtpd
# passes the same for a client an XCLIENT proxy names without its port (PORT=[UNAVAILABLE]),
# but its own port in {daemon_port} (the listener's: XCLIENT does not change it), which
# cleanup gives as 0. Without that macro (milter_connect_macros), the two look alike.
LOCAL_SUBMISSION = frozenset({("localhost", "127.0.0.1", 0), ("localhost", "::1", 0)})
LOCAL_DAEMON_PORTS = frozenset({None, "0"})
# Postfix's smtputf8_enable, which no macro of Postfix's own says: milter_macro_defaults
# gives it (contrib/postfix/main.cf.snippet), as the process asking the milter expands it.
SMTPUTF8_ENABLE = "{smtputf8_enable}"
P = ParamSpec("P")


class MacroSource(Protocol):
    def getsymval(self, sym: str) -> str | None: ...


class Actions(MilterActions, MacroSource, Protocol):
    pass


def guarded(
    kind: str, replies: bool = True, ends: bool = False, recipient: bool = False,
    opens: bool = False,
) -> Callable[
    [Callable[Concatenate[ConnectionHandler, P], Outcome]],
    Callable[Concatenate[ConnectionHandler, P], Outcome],
]:
    """Turn any exception into the fail action (or a pending failure for no-reply steps);
    ``ends``: the step is end of message (see ConnectionHandler.fail); ``recipient``: the
    step is RCPT, whose failure refuses that recipient alone (see its fail_recipient);
    ``opens``: the step is MAIL, which opens the transaction. A local submission's
    failure is answered at end of message only, where its passes are counted
    (:meth:`ConnectionHandler.fail`): tempfailed at MAIL or RCPT, pickup retried it
    forever. Its content is still kept meanwhile, what its passes are known by, in a
    bare transaction where MAIL failed before it opened one (see its open_bare), also
    after an earlier step's failure."""

    def wrap(
        method: Callable[Concatenate[ConnectionHandler, P], Outcome],
    ) -> Callable[Concatenate[ConnectionHandler, P], Outcome]:
        def run(self: ConnectionHandler, /, *args: P.args, **kwargs: P.kwargs) -> Outcome:
            self.enter()
            local = self._client.local
            answers = replies and (ends or not local)
            try:
                if self.pending_failure is not None:
                    # Failed already, and answered so at the next step that answers: the
                    # content in between is not worth a traceback per chunk.
                    if answers:
                        return self.fail(self.pending_failure, ends)
                    if local:
                        try:
                            method(self, *args, **kwargs)
                        except Exception:  # noqa: BLE001 - failed already, and said so
                            self._keep_local(opens, args)
                    return Outcome.CONTINUE
                return method(self, *args, **kwargs)
            except MessageTimeout:
                self.count_error("timeout")
                return self.fail("timeout", ends)
            except Exception:
                log.exception("internal error in the %s callback", kind)
                # Now: a step that replies may never come (the client gives up first).
                self.count_error(kind)
                if answers:
                    if recipient:  # the step's first argument
                        return self.fail_recipient(kind, str(args[0]))
                    return self.fail(kind, ends)
                self.pending_failure = kind
                if local:
                    self._keep_local(opens, args)
                return Outcome.CONTINUE

        functools.update_wrapper(run, method)
        return run

    return wrap


class ConnectionHandler:
    def __init__(self, services: Services, actions: Actions) -> None:
        self._s = services
        self._actions = actions
        self._client = Client()
        # Set from MAIL FROM until _finish, which gives its slot back (if it took one).
        self._txn: Transaction | None = None
        self._txn_lock = threading.Lock()  # a stop's deadline may end it from its thread
        self._counted = False  # in the connections gauge
        self.leading_space = False  # set once the protocol is negotiated
        self.pending_failure: str | None = None

    # --- plumbing --------------------------------------------------------------

    def enter(self) -> None:
        txn = self._txn
        set_message_context(txn.queue_id if txn else None, txn.uid if txn else None)

    def _macro(self, name: str) -> str | None:
        value = self._actions.getsymval(name)
        return value or None

    def _limits(self, policy_set: PolicySet, txn: Transaction) -> Limits:
        """The transaction's enforced limits in ``policy_set``: those whose `limits: when:`
        holds for its envelope, which reads only what was known at MAIL FROM."""
        return policy_set.limits_for(txn.envelope(self._client, recipients=False))

    def count_error(self, kind: str) -> None:
        self._s.metrics.errors.labels(kind).inc()

    def fail(self, kind: str, at_end: bool = False) -> Outcome:
        """Answer an internal failure (counted where it happened); the reply is always set
        before returning. At end of message a local submission tempfailed so past
        local_retry_passes is held instead (see :meth:`_retried`)."""
        if at_end and self._s.settings.fail_action is FailAction.TEMPFAIL:
            txn = self._txn
            if txn is not None and (passes := self._retried(txn)) is not None:
                self._actions.quarantine(_held_reason(passes, f"internal error ({kind})"))
                self._finish("quarantine", None, self._header_facts_if_any(),
                             flags=frozenset({RETRIES_EXHAUSTED}))
                self.pending_failure = None
                return Outcome.CONTINUE
        applied = fail(self._actions, self._s.settings.fail_action)
        log.error("%s: answering %s", kind, applied.reply or applied.outcome.value)
        # Deferred, refused or (fail_action accept) delivered unchecked: named as an abort is.
        self._finish("error", applied.reply, self._header_facts_if_any())
        self.pending_failure = None
        return applied.outcome

    def fail_recipient(self, kind: str, recipient: str) -> Outcome:
        """Answer an internal failure at RCPT: the fail action's refusal for that recipient
        alone, kept for the audit row, as a recipient limit refuses one. Postfix then goes
        on with the client's other recipients, which the transaction still has to check:
        ended here, each later step of it failed again, a traceback apiece, and the
        message was tempfailed. ``accept`` ends it as at any step (Postfix asks the milter
        nothing more of the message, delivered unchecked)."""
        txn = self._txn
        if txn is None or self._s.settings.fail_action is FailAction.ACCEPT:
            return self.fail(kind)
        applied = fail(self._actions, self._s.settings.fail_action)
        log.error("%s: answering %s to that recipient alone", kind, applied.reply)
        txn.refuse_recipient(recipient, str(applied.reply))
        return applied.outcome

    def _finish(self, action: str, reply: SmtpReply | None,
                facts: MessageFacts | None = None, verdict: Verdict | None = None,
                flags: frozenset[str] = frozenset(), *, kept: bool = False) -> bool:
        """Audit the transaction (if one is open) and forget it, counting the verdict's
        rules; False when none was (or a stop's deadline cut it meanwhile, and audited
        it). The row names the set of ``verdict``, else the one end of message was
        deciding in, else the one running now. ``kept``: see :meth:`_audit`."""
        return self._audit(action, reply, facts, verdict, flags, kept=kept) is not None

    def _answer(self, applied: Applied, action: str, facts: MessageFacts,
                verdict: Verdict, flags: frozenset[str] = frozenset()) -> Outcome | None:
        """Audit the transaction as :meth:`_finish` does, answered ``applied`` at end of
        message: the outcome answered, None when a stop's deadline cut it. One that lets
        the message in is answered a tempfail instead when its event can be neither
        stored nor queued (AuditPipeline.submit): Postfix would queue a message with no
        audit row."""
        refusable = applied.outcome in DELIVERED
        audited = self._audit(action, applied.reply, facts, verdict, flags, refusable=refusable,
                              kept=True)
        if audited is None:
            return None
        if audited:
            return applied.outcome
        self._s.metrics.errors.labels("spool_full").inc()  # a refusal, as at MAIL FROM
        if (refused := self._s.occasional.due(REFUSED_UNSTORABLE)) is not None:
            log.warning("audit event can be neither stored nor queued (spool_dir full, or "
                        "the audit queue): tempfailing the message (refused: %s)", refused)
        return reply_with(self._actions, Reply.INTERNAL_ERROR).outcome

    def _audit(self, action: str, reply: SmtpReply | None, facts: MessageFacts | None,
               verdict: Verdict | None, flags: frozenset[str], *,
               refusable: bool = False, kept: bool = False) -> bool | None:
        """Audit and forget the open transaction: None when none was (or a stop's
        deadline cut it meanwhile, and audited it), False when its event was
        ``refusable`` and refused (neither logged nor counted: the caller answers
        otherwise). ``kept``: an event that cannot be built (an error of ours) leaves the
        transaction open, for a step's failure to audit without the verdict
        (:meth:`fail`), and to count a local submission's pass: forgotten, it went with
        no row, and pickup retried it forever."""
        txn = self._txn
        if txn is None:
            return None
        policy_hash = (verdict.policy_hash if verdict
                       else txn.deciding_hash or self._s.policies.current.content_hash)
        try:
            event = build_event(
                instance=self._s.settings.instance_name, transaction=txn, client=self._client,
                action=action, reply=reply, facts=facts, verdict=verdict, policy_hash=policy_hash,
                flags=flags,
            )
        except Exception:
            if not kept and self._forget(txn):
                self._release(txn)
            raise
        if not self._forget(txn):
            return None
        try:
            if not self._s.audit.submit(event, refusable=refusable):
                return False
            log_verdict(action, txn, reply, verdict)
            metrics = self._s.metrics
            metrics.messages.labels(action).inc()
            for rule in verdict.rules if verdict else ():
                metrics.rules.labels(rule).inc()
        finally:
            self._release(txn)
        return True

    def _forget(self, txn: Transaction) -> bool:
        """Forget ``txn``, unless a stop's deadline cut it (on its own thread) meanwhile:
        whether it was still open."""
        with self._txn_lock:
            if self._txn is not txn:
                return False
            self._txn = None
            return True

    def _release(self, txn: Transaction) -> None:
        """What the forgotten ``txn`` held: its body, its place among the open ones, its slot."""
        txn.close()
        self._s.transactions.release(self)
        if txn.slot:
            self._s.slots.release()

    def _refuse(self, reply: Reply, action: str, flags: frozenset[str] = frozenset(), *,
                decided_by: str | None = None, limit: str | None = None) -> Outcome:
        """Refuse before end of message; the audit row still names the message, and
        the policy ``limit`` that refused it."""
        txn = self._txn
        if txn is not None:
            # Postfix knows the queue id only once a recipient was accepted (DATA macros).
            txn.queue_id = txn.queue_id or self._macro("i")
            self.enter()
        applied = reply_with(self._actions, reply)
        self._finish(action, applied.reply, self._header_facts(), flags=flags,
                     verdict=self._limit_verdict(reply, limit, decided_by), kept=True)
        return applied.outcome

    def _limit_verdict(self, reply: Reply, limit: str | None,
                       decided_by: str | None) -> Verdict | None:
        """The row's rule for a limit refused here, as the engine names it where it
        refuses (``eval``, ``test``, a message sanitizing made too big): a search or a
        metric by ``limit:max_message_bytes`` missed every message refused by size."""
        if limit is None:
            return None
        return Verdict(Reject(reply.reply), rules=(f"limit:{limit}",),
                       policy_hash=decided_by or self._s.policies.current.content_hash)

    def _abandon(self, flags: frozenset[str] = frozenset()) -> bool:
        """Audit an unfinished transaction (if one is open) as aborted, and forget it."""
        return self._finish("aborted", None, self._header_facts_if_any(), flags=flags)

    def cut(self) -> bool:
        """A stop's deadline ends the open transaction (on the stop's thread, before it
        hangs the connection up, which no callback then answers): its row says aborted,
        flagged stop_deadline. False when none was open."""
        # In the message's context (a copy: the stop's own lines keep theirs).
        return contextvars.copy_context().run(self._cut)

    def _cut(self) -> bool:
        self.enter()
        return self._abandon(frozenset({STOP_DEADLINE}))

    def _header_facts_if_any(self) -> MessageFacts | None:
        """:meth:`_header_facts`, or None when parsing them fails (abort() is unguarded,
        and a failure may be that parse's own): the row goes without them, the
        transaction still ends."""
        try:
            return self._header_facts()
        except Exception:
            log.exception("cannot parse the headers of an unfinished transaction")
            return None

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
        # No slot yet: a session idle before MAIL FROM holds no body, no evaluation.
        self._counted = True
        self._s.metrics.connections.inc()
        # No socket address (a family libmilter does not pass on): the macro may have one.
        self._client = Client(address=address or self._macro("{client_addr}"),
                              name=verified_name(hostname),
                              local=self._local_submission(hostname, address, port))
        return Outcome.CONTINUE

    def _local_submission(self, hostname: str, address: str | None, port: int | None) -> bool:
        """Whether the connection is the one cleanup makes up for mail submitted with
        sendmail(1), not an SMTP client's that looks the same (see LOCAL_SUBMISSION)."""
        return ((hostname, address, port) in LOCAL_SUBMISSION
                and self._macro("{daemon_port}") in LOCAL_DAEMON_PORTS)

    @guarded("helo", replies=False)
    def helo(self, name: str) -> Outcome:
        self._client.helo = name
        return Outcome.CONTINUE

    @guarded("envfrom", opens=True)
    def mail(self, sender: str, params: tuple[str, ...]) -> Outcome:
        self._abandon()  # a new MAIL FROM ends an unfinished transaction
        policy_set = self._s.policies.current
        txn = Transaction(
            sender=strip_brackets(sender),
            auth_user=self._macro("{auth_authen}"),
            memory_threshold=self._s.settings.body_memory_threshold,
            max_bytes=None,
            smtputf8=self._folds_unicode(params),
            queue_id=self._macro("i"),
        )
        txn.learn_origin(sender, lambda: self._macro("{mail_addr}"))
        set_message_context(txn.queue_id, txn.uid)
        if self._s.audit.refusing_mail:
            # No audit row: it could not be stored, and refusals must not grow the spool.
            # Counted as a refusal, as overload is: no audit event was lost.
            txn.close()
            self._s.metrics.errors.labels("spool_full").inc()
            if (refused := self._s.occasional.due(REFUSED_SPOOL_FULL)) is not None:
                log.warning("audit spool full: tempfailing new mail (refused: %s)", refused)
            return reply_with(self._actions, Reply.INTERNAL_ERROR).outcome
        # On 421 Postfix ends the SMTP session: the client comes back later. No audit row
        # for either refusal: nothing of the message came yet. The slot itself is taken
        # with the content (see _keeps_content).
        if self._s.slots.full:
            txn.close()
            self._overloaded()
            return reply_with(self._actions, Reply.OVERLOADED).outcome
        if not self._admit(txn):
            # Stopping (the queue is draining): back to a milter that is running.
            # A busy MX goes on connecting through the drain: once a minute, with a count.
            if (refused := self._s.occasional.due(REFUSED_STOPPING)) is not None:
                log.info("stopping: refusing a new transaction (refused: %s)", refused)
            return reply_with(self._actions, Reply.OVERLOADED).outcome
        # Kept from here on, for SIZE, the body as it streams and the recipients, even if
        # the set reloads: one transaction is not held to two limits. Once admitted: a
        # local submission whose limits fail is held past its passes (see guarded).
        limits = self._limits(policy_set, txn)
        txn.max_bytes, txn.max_recipients = limits.max_message_bytes, limits.max_recipients
        txn.limits_hash = policy_set.content_hash
        declared = esmtp_size(params)
        if declared is not None and not txn.fits(declared):
            return self._refuse(Reply.MESSAGE_TOO_BIG, "reject", decided_by=txn.limits_hash,
                                limit="max_message_bytes")
        return Outcome.CONTINUE

    def _folds_unicode(self, params: tuple[str, ...]) -> bool:
        """Whether Postfix folds the transaction's addresses as Unicode does (its
        smtputf8_enable, see session.recipient_key): its MAIL FROM said SMTPUTF8, which
        Postfix takes only then, or the {smtputf8_enable} macro says so. A sendmail(1)
        submission's MAIL FROM, made up by cleanup, never says SMTPUTF8: without the
        macro its recipients fold ASCII only, and one repeated in another Unicode case
        counts twice, never once where Postfix keeps two."""
        if esmtp_param(params, "SMTPUTF8") is not None:
            return True
        return (self._macro(SMTPUTF8_ENABLE) or "").lower() == "yes"

    def _admit(self, txn: Transaction) -> bool:
        """Open ``txn``; False (closed) while stopping."""
        self._txn = txn  # first: a stop's deadline may cut it once admitted
        if self._s.transactions.admit(self):
            return True
        self._txn = None
        txn.close()
        return False

    def _keep_local(self, opens: bool, args: tuple[object, ...]) -> None:
        """After a local submission's step failed, first or after an earlier one (a
        HELO's): where it was MAIL (``opens``; its first argument, the sender), a bare
        transaction. Without it after a HELO's, nothing was kept or counted, and pickup
        retried the message forever."""
        if opens:
            self.open_bare(str(args[0]))

    def open_bare(self, sender: str) -> None:
        """For a local submission whose MAIL failed before it opened its transaction, a
        bare one (its sender; no limits, no macros), unless it did: its recipients and
        content are still kept and end of message counts its pass, as after any other
        failure (neither was, and pickup retried it forever)."""
        if self._txn is None:
            self._admit(Transaction(sender=strip_brackets(sender), auth_user=None,
                                    memory_threshold=self._s.settings.body_memory_threshold,
                                    max_bytes=None))

    @guarded("envrcpt", recipient=True)
    def rcpt(self, recipient: str, params: tuple[str, ...]) -> Outcome:
        txn = self._require()
        txn.queue_id = txn.queue_id or self._macro("i")
        txn.learn_origin(recipient, lambda: self._macro("{rcpt_addr}"))
        # Refusing a recipient of a local submission, Postfix defers the whole message
        # ("milter configuration error"), and pickup retries it forever: keep them all,
        # end of message refuses the message past the limit.
        limit = None if self._client.local else txn.max_recipients
        if not txn.add_recipient(recipient, params, limit):
            applied = reply_with(self._actions, Reply.TOO_MANY_RECIPIENTS)
            txn.refuse_recipient(recipient, str(applied.reply))
            return applied.outcome
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

    def _overloaded(self) -> None:
        self._s.metrics.errors.labels("overload").inc()
        if (refused := self._s.occasional.due(REFUSED_OVERLOADED)) is not None:
            log.warning("overloaded (%d transactions): refusing one from %s (refused: %s)",
                        self._s.slots.active, self._client.address, refused)

    def _keeps_content(self, txn: Transaction) -> bool:
        """Whether the transaction's content is kept: its first header or body chunk (or
        its end, for an empty message) takes a slot (session.Slots). Past the bound,
        which other content reached since its MAIL FROM, none is kept, and end of
        message answers 451 4.3.2."""
        if txn.slot is None:
            txn.slot = self._s.slots.acquire()
            if not txn.slot:
                self._overloaded()
        return txn.slot

    @guarded("header", replies=False)
    def header(self, name: str, value: bytes) -> Outcome:
        txn = self._require()
        if self._keeps_content(txn):
            txn.add_header(name, value, self.leading_space)
        return Outcome.CONTINUE

    @guarded("body", replies=False)
    def body(self, chunk: bytes) -> Outcome:
        # Postfix streams the body without waiting for an answer per chunk (a
        # 2 MB message is 32 round trips fewer); a body past the size limit
        # stops being stored here and is refused at end of message, which is
        # when the SMTP client hears any answer to DATA anyway.
        txn = self._require()
        if not self._keeps_content(txn):
            return Outcome.CONTINUE
        spilled = txn.spilled
        txn.add_body(chunk)
        if txn.spilled and not spilled:
            self._s.metrics.bodies_spilled.inc()
        return Outcome.CONTINUE

    @guarded("eom", ends=True)
    def eom(self) -> Outcome:
        txn = self._require()
        txn.queue_id = self._macro("i") or txn.queue_id
        self.enter()
        if not self._keeps_content(txn):
            return self._refuse(Reply.BUSY, "tempfail", OVERLOADED)
        if not txn.within_limit:
            return self._refuse(Reply.MESSAGE_TOO_BIG, "reject", decided_by=txn.limits_hash,
                                limit="max_message_bytes")
        # The set that decides, as a lowered limit deletes recipients past it (the
        # verdict; a local submission past it, not refused at RCPT, is refused whole).
        policy_set = self._s.policies.current
        txn.deciding_hash = policy_set.content_hash
        with self._s.metrics.latency.time():
            facts, verdict, key = self._s.decider.decide_in_time(
                policy_set, txn, self._client, self._actions.progress)
            passing = self._passing(txn, verdict)
            verdict = self._held_if_retried(txn, verdict)
            applied = apply_verdict(self._actions, verdict, MessageEdits(
                uid=txn.uid, id_header=self._s.settings.id_header,
                header_counts=txn.header_names, recipients=txn.recipients,
                leading_space=self.leading_space, local=self._client.local,
            ))
        answered = self._report(verdict, applied, facts)
        if passing is not None and answered not in (None, Outcome.TEMPFAIL):
            self._s.local_retries.passed(passing)
        # Not once a stop's deadline cut the transaction (its row says aborted): the
        # connection is hung up, and the MTA applies milter_default_action.
        if answered in DELIVERED and key is not None:
            duplicates = self._s.duplicates
            # With the id it carries from now on, if any (see Decider._rescan): under one lock.
            issued = [duplicates.issued_key(txn.uid)] if self._s.settings.id_header else []
            duplicates.record(key, *issued)
        return applied.outcome if answered is None else answered

    def _passing(self, txn: Transaction, verdict: Verdict) -> bytes | None:
        """For a local submission whose verdict is no tempfail, while passes are counted:
        the key that starts its passes again, once it is answered so. Started at once, a
        failure after it (applying the verdict, say) counted one pass, over and over, and
        pickup retried the message forever."""
        if not self._client.local or verdict.action is Action.TEMPFAIL:
            return None
        return self._s.local_retries.counted_key(txn)

    def _held_if_retried(self, txn: Transaction, verdict: Verdict) -> Verdict:
        """``verdict``, or for a local submission whose tempfail verdict came once too often
        (:meth:`_retried`), a hold: its rules, and the flag retries_exhausted."""
        if not self._client.local or verdict.action is not Action.TEMPFAIL:
            return verdict
        passes = self._retried(txn)
        if passes is None:
            return verdict
        return dataclasses.replace(
            verdict, decision=Quarantine(_held_reason(passes, "deferred by policy")),
            flags=verdict.flags | {RETRIES_EXHAUSTED})

    def _retried(self, txn: Transaction) -> int | None:
        """For a local submission tempfailed once more at end of message: how many of its
        passes were, once past local_retry_passes (pickup retries it forever: see
        localretries), else None. Counted once a pass: a failure answered after its
        tempfail verdict (applying it) counted it twice, and held it at half its passes."""
        if not self._client.local:
            return None
        if txn.counted_pass is None:
            txn.counted_pass = self._s.local_retries.exhausted(txn) or 0
            if txn.counted_pass:
                log.warning("tempfailed %d times from the maildrop queue: held instead "
                            "(local_retry_passes)", txn.counted_pass)
        return txn.counted_pass or None

    def abort(self) -> Outcome:
        self.enter()
        self._abandon()
        self.pending_failure = None
        return Outcome.CONTINUE

    def close(self) -> Outcome:
        self.abort()
        if self._counted:
            self._counted = False
            self._s.metrics.connections.dec()
        return Outcome.CONTINUE

    # --- end of message ----------------------------------------------------------

    def _require(self) -> Transaction:
        if self._txn is None:
            raise RuntimeError("message callback outside a transaction")
        return self._txn

    def _report(self, verdict: Verdict, applied: Applied,
                facts: MessageFacts) -> Outcome | None:
        """Audit end of message: the outcome answered (:meth:`_answer`)."""
        if applied.refused is not None:
            # The milter's own limit (apply_verdict): a reject of the rules that matched,
            # which the row names and whose notify is raised as for their own refusal.
            return self._answer(applied, "reject", facts, applied.refused, applied.flags)
        if INTERNAL_ERROR in verdict.flags:  # deferred: evaluating failed (the log says why)
            self._s.metrics.errors.labels("evaluation").inc()
        action = verdict.action.value
        if facts.duplicate:
            log.info("re-delivery of message-id %s", facts.message_id)
        return self._answer(applied, action, facts, verdict)


def _held_reason(passes: int, why: str) -> str:
    """The hold queue's reason for a local submission held past local_retry_passes."""
    return f"postwarden: {why} {passes} times from the maildrop queue"


# What ends a field, or the sender's <...>, and the escape's own backslash. A quoted
# local part may hold them all ("x> nrcpt=0 rules=allow"@...): a script reading the
# fields by name would take the sender's for ours.
_FIELD_BREAKS = re.compile(r"[\s>\\]")


def log_verdict(action: str, txn: Transaction, reply: SmtpReply | None,
                verdict: Verdict | None) -> None:
    """The one line of each audited transaction, the same fields whether the policies,
    a limit, an error or an abort ended it (the queue id and our id ride in the
    context): grep finds it by either id, a script reads its fields by name (the reply,
    with spaces, comes last)."""
    rules = ",".join(verdict.rules) if verdict else ""
    changes = ",".join(change_type(c) for c in verdict.changes) if verdict else ""
    sender = escape_matches(_FIELD_BREAKS, txn.sender)
    log.info("%s from=<%s> nrcpt=%d rules=%s changes=%s reply=%s", action, sender,
             len(txn.recipients), rules or "-", changes or "-", reply or "-")
