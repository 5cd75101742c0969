"""Outages said in a few lines: while Postgres is away, every background loop (the relay
workers, each polling every second) and every request (the rate limiter, the runtime
settings) fails, and a line for each failure buried everything else in the log. Each
component says once that it lost the database, with the reason; then at most once a
minute (postwarden_policies.occasional) while the outage lasts, with how many failures
it did not log; then once that the database is back. The metrics still count each."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from postwarden_policies.occasional import Occasional
from postwarden_store import database_problem

log = logging.getLogger(__name__)


class Outages:
    """Which components are without the database, and since when (one event loop's)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._occasional = Occasional(clock=clock)
        self._since: dict[str, float] = {}

    def failed(self, component: str, exc: BaseException, what: str = "database") -> None:
        """``component`` failed for want of the database (or ``what`` it names)."""
        # The reason, not the type alone: no part of it quotes a secret (database_problem).
        problem = database_problem(exc)
        tally = self._occasional.due(component)
        if component not in self._since:
            self._since[component] = self._clock()
            log.warning("%s: %s unavailable (%s); said again at most once a minute until "
                        "it is back", component, what, problem)
        elif tally is not None:
            log.warning("%s: %s still unavailable (%s) after %.0f s; failures: %s",
                        component, what, problem, self._clock() - self._since[component],
                        tally)

    def back(self, component: str, what: str = "database") -> None:
        """``component`` did what needed the database: an outage it was in is over."""
        since = self._since.pop(component, None)
        if since is None:
            return
        unsaid = self._occasional.forget(component)
        # At the outage's level: a log read for warnings must show that it ended.
        log.warning("%s: %s reachable again after %.0f s (%d failure(s) not logged)",
                    component, what, self._clock() - since, unsaid)


# The service's: each component's outage is one, whichever of its tasks meets it.
OUTAGES = Outages()
