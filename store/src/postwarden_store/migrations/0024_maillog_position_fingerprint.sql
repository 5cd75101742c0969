-- A log emptied in place (logrotate's copytruncate) while no instance read it
-- keeps its inode, so its saved position looked valid and a restart read on
-- mid-line. The reader checks the bytes before the saved position are still
-- those it read there, by a fingerprint of them saved with the position (a
-- BLAKE2b digest of up to 64 bytes), in a column of its own: saved_by stays a
-- plain token that tells one save from the next. A row without one (saved by
-- an older version) is trusted as before.
ALTER TABLE maillog_positions ADD COLUMN mark_fingerprint bytea;
