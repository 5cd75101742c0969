-- One reader per log. Service instances on one host (one process per core is
-- how the service uses several) all follow the same maillog_file; each one
-- applying every line doubled the timeline, and a lagging one set a delivered
-- recipient back to deferred. The instance holding a log's lease reads and
-- applies it, renewing the lease at every poll; the others stand by and take
-- over, from the saved position, once it is released or has lapsed.
--   saved_by: a fresh token at every save, so a reader knows the row is still
--     as it left it (not moved on by another, not changed by a commit whose
--     answer it missed).
--   read_to_end: the maillog_reads number the last poll that read the log to
--     its end drew before reading; a standby instance's relay draws one and
--     waits for a larger one (a sequence only grows, a clock may step back).
ALTER TABLE maillog_positions
    ADD COLUMN leader text,
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN saved_by uuid,
    ADD COLUMN read_to_end bigint;
CREATE SEQUENCE maillog_reads;
