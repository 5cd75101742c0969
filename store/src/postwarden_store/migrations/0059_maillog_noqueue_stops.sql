-- An access table's DISCARD or HOLD at a message's first recipient is logged before
-- its queue file opens (smtpd's `NOQUEUE: hold: RCPT ...`), and is the message's whose
-- queue id the same smtpd process logs next; a hold is committed by the session's end
-- (0011's receipts). A read position saved between those lines lost them: the next
-- reader tied no stop to the message (no `held` event; a discarded one stayed
-- `relayed`) and committed no held receipt. They are saved with the position now:
-- {"stopped": [[smtpd process, stop], ...], "held": [[queue id, smtpd process], ...]},
-- NULL for none.
ALTER TABLE maillog_positions ADD COLUMN noqueue_stops jsonb;
