"""Commits that need not wait for the disk, and the one that then makes them durable.

A counter row a request updates (its key's rate-limit window, the send API's
usage counters) stays locked until its transaction commits, and a commit waits
for the WAL to reach the disk (``synchronous_commit``, on by default): every
other request of the same key queued behind that wait. With a 2 ms flush one
key enqueued 350 messages a second where 32 keys enqueued 1,400
(``bench/send_hot_key.py``). A statement that starts with :data:`NO_WAIT` and
reads from it commits as soon as its commit record is written. Rate-limit
counters stay that way: a hit lost in a crash does no harm. What must survive
one (an accepted message) is followed by :data:`FLUSH`, a transaction of its
own whose commit waits for the WAL up to itself, so up to the earlier one too,
while no counter row is locked: concurrent requests wait for one flush together.
"""

# A CTE: set for the statement's own transaction only (its commit reads it).
NO_WAIT = "no_wait AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true))"
# A transaction commits waiting for the WAL (as the server's synchronous_commit
# says) only if it has an id and wrote WAL: a transactional logical-decoding
# message of no content does both, and touches no table. (An id alone, from
# pg_current_xact_id(), commits without waiting.)
FLUSH = "SELECT pg_logical_emit_message(true, 'postwarden', '')"
