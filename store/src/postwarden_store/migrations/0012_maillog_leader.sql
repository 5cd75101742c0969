-- One reader per log. Service instances on one host (one process per core is
-- how the service uses several) all follow the same maillog_file; each one
-- applying every line doubled the timeline, and a lagging one set a delivered
-- recipient back to deferred. The instance holding a log's lease reads and
-- applies it, renewing the lease at every poll; the others stand by and take
-- over, from the saved position, once it is released or has lapsed.
-- read_to_end_at: when the last poll that read the log to its end began (the
-- database's clock), for a standby instance's relay waiting on the reader.
ALTER TABLE maillog_positions
    ADD COLUMN leader text,
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN read_to_end_at timestamptz;
