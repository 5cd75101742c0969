-- A delivery line can be read before the relay stored the queue id it names;
-- the reader keeps such lines and tries them again at its next polls. The
-- saved position moves past them, so a reader that died or stalled took them
-- along, and the recipient stayed "relayed" for good (a service killed just
-- after Postfix's 250, with the mail delivered at once, did so). Those of
-- them that name a receipt of ours (migration 0011) are now saved with the
-- position, in the poll's transaction, and the next reader goes on with them.
-- Lines about other mail are not: they would cost a write at every poll.
ALTER TABLE maillog_positions ADD COLUMN pending jsonb NOT NULL DEFAULT '[]';
