-- Postfix reuses short queue ids. A service down while Postfix logged on catches up
-- on the lines it missed, and a message it relays as it comes back may get the queue
-- id of an earlier one whose last lines are still unread: those lines were applied
-- to it, the message relayed last under the id (a recipient bounced that Postfix
-- delivered, and was suppressed; the earlier message's removal ended its id too). A
-- message's lines all follow its arrival in the log (cleanup names our Message-ID
-- under the queue id before Postfix answers the relay), so the reader holds a queue
-- id's lines while the arrival of a message stored under it is still ahead of it:
--   queue_arrival_mark: the maillog_reads number drawn as the relay stored the queue
--     id, the reader not having read the message's arrival under it yet; NULL once it
--     has (its Message-ID line under that id), or once a poll drawn after the mark
--     read the log to its end (the arrival is read, or lost: a log rotated away), and
--     for messages stored before this migration. Lines read before the arrival are
--     dropped at it, as those of one poll were (they are another message's).
-- A nullable column without a default: no table rewrite.
ALTER TABLE outbound_messages ADD COLUMN queue_arrival_mark bigint;
CREATE INDEX outbound_messages_queue_arrival_mark ON outbound_messages (queue_arrival_mark)
    WHERE queue_arrival_mark IS NOT NULL;
