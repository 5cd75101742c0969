"""A message's verdict at end of message, worked out within its deadline.

A message up to :data:`INLINE_BYTES` is parsed and evaluated on the callback's
thread: handing it to another thread and back cost a fifth of the milter's CPU
per small message (thread switches under the GIL), and its worst case is a
fraction of a second, so it needs no progress replies; a verdict reached after
the deadline (an overloaded host) is answered all the same, with a warning: the
message was checked, and the fail action would deliver it unchecked (accept) or
defer it to meet the same wait on every retry (tempfail). Its HTML parts cleaned in child
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
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from postwarden_policies import (
    Envelope,
    MessageFacts,
    PolicySet,
    Verdict,
    evaluate,
    parse_for,
)
from postwarden_policies.sanitize import DEADLINE as SANITIZE_DEADLINE

from .apply import own_headers
from .duplicates import DuplicateDetector
from .errors import MessageTimeout
from .session import Client, Transaction
from .settings import MilterSettings

PROGRESS_SECONDS = 5.0  # well under Postfix's milter_content_timeout (300 s)
# Larger messages are decided on the worker pool (module docstring). The slowest
# message known of this size takes ~0.17 s (bench/policy_eval.py, "worst known").
INLINE_BYTES = 256 * 1024
# What HTML parts the sanitizer cleans in child processes get, all together, in a
# message decided here: this thread sends no progress replies while it waits.
INLINE_CHILD_SECONDS = PROGRESS_SECONDS
Decided = tuple[MessageFacts, Verdict, bytes | None]  # and the duplicate key, if any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decider:
    """Decides the messages of one connection, with what the callbacks share."""

    settings: MilterSettings
    duplicates: DuplicateDetector
    workers: concurrent.futures.ThreadPoolExecutor

    def decide(self, policy_set: PolicySet, raw: bytes, envelope: Envelope,
               uid: str, smtputf8: bool) -> Decided:
        """Parse, look re-deliveries up, evaluate.

        The duplicate key is only looked up here; eom records it once the verdict
        delivered the message, so that the retry of a refused one is no re-delivery.
        """
        facts = parse_for(policy_set, raw, envelope)  # with the transaction's own caps
        duplicates = self.duplicates
        key = duplicates.key(facts.message_id, envelope.sender, envelope.recipients,
                             memoryview(raw)[facts.body_offset:], smtputf8)
        if key is not None and duplicates.seen(key) and not self._rescan(facts):
            facts = dataclasses.replace(facts, duplicate=True)
        # The message as it would go on, with the id it carries from now on.
        return facts, evaluate(policy_set, facts, own_headers(self.settings.id_header, uid)), key

    def _rescan(self, facts: MessageFacts) -> bool:
        """The message carries an id this milter wrote into a message it delivered: it is
        that message passing it again (the milter listed twice, or re-injected by a
        content_filter into an smtpd that runs it), not a sender's re-delivery. Any other
        value of the header (forged, or another site's) counts for nothing."""
        name = self.settings.id_header.lower()
        duplicates = self.duplicates
        return bool(name) and any(
            duplicates.seen(duplicates.issued_key(h.raw_value.strip()))
            for h in facts.headers if h.name.lower() == name)

    def decide_in_time(self, policy_set: PolicySet, txn: Transaction, client: Client,
                       progress: Callable[[], None]) -> Decided:
        """:meth:`decide` within the deadline, here or on the pool (module docstring),
        calling ``progress`` to send a progress reply while the pool works.

        The deadline covers our own processing from end of message: a slow client
        sending a large body must not turn into a tempfail.
        """
        deadline = time.monotonic() + self.settings.message_timeout_seconds
        raw, envelope = txn.raw_message(), txn.envelope(client)
        inline = len(raw) <= INLINE_BYTES
        # A sanitizer child working past the deadline would work for nobody. Here,
        # with no progress replies, its parts get INLINE_CHILD_SECONDS in all.
        token = SANITIZE_DEADLINE.set(
            min(deadline, time.monotonic() + INLINE_CHILD_SECONDS) if inline else deadline)
        try:
            if not inline:
                # In this thread's context, so that the pool thread logs with the
                # message's ids (and sees the deadline).
                job = self.workers.submit(
                    contextvars.copy_context().run, self.decide, policy_set, raw, envelope,
                    txn.uid, txn.smtputf8)
                return self._wait(job, deadline, progress)
            decision = self.decide(policy_set, raw, envelope, txn.uid, txn.smtputf8)
        finally:
            SANITIZE_DEADLINE.reset(token)
        late = time.monotonic() - deadline
        if late > 0:
            log.warning("verdict %.1f s after the deadline (message_timeout_seconds, %g s): "
                        "answered", late, self.settings.message_timeout_seconds)
        return decision

    def _wait(self, job: concurrent.futures.Future[Decided], deadline: float,
              progress: Callable[[], None]) -> Decided:
        """The pool's verdict by ``deadline``, with progress replies while it is worked out."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                job.cancel()
                raise MessageTimeout(
                    f"no verdict within {self.settings.message_timeout_seconds:g} s")
            try:
                return job.result(timeout=min(PROGRESS_SECONDS, remaining))
            except concurrent.futures.TimeoutError:
                progress()
