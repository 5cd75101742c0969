-- One reader per log. Service instances on one host (one process per core is
-- how the service uses several) all follow the same maillog_file; each one
-- applying every line doubled the timeline, and a lagging one set a delivered
-- recipient back to deferred. The instance holding a log's lease reads and
-- applies it, renewing the lease at every poll; the others stand by and take
-- over, from the saved position, once it is released or has lapsed.
ALTER TABLE maillog_positions
    ADD COLUMN leader text,
    ADD COLUMN lease_until timestamptz;
