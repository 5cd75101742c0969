-- The audit search finds a message by our own id too (message_uid): the value of
-- the X-Postwarden-Id header a delivered copy carries, all a recipient's admin may
-- have. Made on the partitioned table, the index is made on every partition, and
-- on each one created later; audit writes wait until this migration commits
-- (CONCURRENTLY is refused on a partitioned table).
CREATE INDEX audit_events_message_uid ON audit_events (message_uid);
