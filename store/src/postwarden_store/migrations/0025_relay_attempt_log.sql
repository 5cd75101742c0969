-- An interrupted relay attempt waited for every host's log reader that had read
-- lately to read its log to the end again; one whose service had stopped never
-- would, so every interrupted row was held back for up to 30 minutes. Only the
-- log of the Postfix the attempt went to can show it, and only while its reader
-- has not read that log past the attempt.
--   outbox.attempt_log: the maillog_positions key (host:path) of the log of the
--     Postfix the row's last attempt went to; attempt_by: the instance that made
--     it, as maillog_positions.leader names it. Set by the claim of a row not
--     interrupted, and before an interrupted row is sent again. NULL: unknown
--     (rows of an older version, or a relay without maillog_path).
--   maillog_positions.read_to_stop: the last save was its reader's final poll
--     at a stop, its relay already stopped, and it read the log to its end: every
--     attempt that instance made is in what was read. Cleared by every other save.
ALTER TABLE outbox ADD COLUMN attempt_log text, ADD COLUMN attempt_by text;
ALTER TABLE maillog_positions ADD COLUMN read_to_stop boolean NOT NULL DEFAULT false;
