"""What the callbacks of every connection share (:class:`Services`), among it the
transactions open right now, which a stop waits for and whose deadline cuts them."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import threading
from dataclasses import dataclass
from typing import Protocol

from postwarden_policies import AuditEvent
from postwarden_policies.occasional import Occasional

from .decider import Decider
from .duplicates import DuplicateDetector
from .localretries import LocalRetries
from .metrics import Metrics
from .reload import PolicyHolder
from .session import InFlight, Slots
from .settings import MilterSettings


class AuditSink(Protocol):
    def submit(self, event: AuditEvent, *, refusable: bool = False) -> bool: ...

    @property
    def refusing_mail(self) -> bool: ...


class TransactionHolder(Protocol):
    """A connection with a transaction open (handler.ConnectionHandler)."""

    def cut(self) -> bool: ...


class OpenTransactions:
    """The connections holding a transaction open: what a stop waits for, and what its
    deadline cuts. Once closed (the stop has begun) none is admitted, so a session
    sending message after message cannot hold the stop up to its deadline."""

    def __init__(self) -> None:
        self._holders: set[TransactionHolder] = set()
        self._closed = False
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        return len(self._holders)

    def admit(self, holder: TransactionHolder) -> bool:
        """Count ``holder``'s new transaction; False once closed."""
        with self._lock:
            if self._closed:
                return False
            self._holders.add(holder)
            return True

    def release(self, holder: TransactionHolder) -> None:
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
    slots: Slots  # transactions, up to max_concurrency
    workers: concurrent.futures.ThreadPoolExecutor
    transactions: OpenTransactions = dataclasses.field(default_factory=OpenTransactions)
    callbacks: InFlight = dataclasses.field(default_factory=InFlight)  # running, for a stop
    # Refusals' warnings, said once a minute with counts: per process, not per connection.
    occasional: Occasional = dataclasses.field(default_factory=Occasional)

    @functools.cached_property
    def decider(self) -> Decider:
        """End of message's verdicts, one for every connection (made of the above)."""
        return Decider(self.settings, self.duplicates, self.workers)

    @functools.cached_property
    def local_retries(self) -> LocalRetries:
        """Local submissions' tempfailed passes, for every connection (localretries)."""
        return LocalRetries(self.settings.local_retry_passes, self.settings.spool_dir)
