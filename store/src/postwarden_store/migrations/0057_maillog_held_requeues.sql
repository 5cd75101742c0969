-- A follower catching up reads an administrator's requeue (postsuper -r: pickup's
-- `orig_id=` line) of a queue id whose message of ours it has yet to read the arrival of
-- (0055). It moved the message given the id before, if any, and was then forgotten:
-- where the arrival was lost (the log rotated away), the requeue was ours, which stayed
-- under its old id and never got its results. Such a requeue now waits as that id's
-- lines do: applied to the earlier message once the arrival is read after it, to ours
-- once the log is read to its end. Saved with the position, as the lines waiting with
-- it (0014), so the next reader goes on with them: [[old queue id, new queue id], ...],
-- NULL for none.
ALTER TABLE maillog_positions ADD COLUMN requeues jsonb;
