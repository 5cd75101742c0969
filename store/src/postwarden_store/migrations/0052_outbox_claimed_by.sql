-- A relay worker killed mid-batch left its claimed rows for their whole lease (15
-- minutes) before another claim sent them.
--   outbox.claimed_by: the process whose claim leases the row (boot id, PID namespace,
--     user, pid and start time), set by the claim, cleared when the claim gives the
--     row back or stores a retry. A process of the same host can then tell the claimer
--     is gone, and make its rows due at once. NULL: not leased, or a claim by a process
--     that cannot name itself (or an older version): the lease alone ends it.
-- A nullable column without a default: no table rewrite.
ALTER TABLE outbox ADD COLUMN claimed_by text;
