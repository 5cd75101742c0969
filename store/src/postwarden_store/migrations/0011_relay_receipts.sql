-- A relay attempt cut off between Postfix's 250 and storing it (the service
-- died, or stopped while Postgres was away) leaves its outbox row leased and
-- "unsettled": the claim sets the flag, a deferral or a release clears it,
-- and a stored outcome deletes the row. Sending such a row again when its
-- lease ends would deliver the message twice if Postfix had queued it, so
-- the relay first asks Postfix's log (postwarden_admin_api.send.receipts).
ALTER TABLE outbox ADD COLUMN unsettled boolean NOT NULL DEFAULT false;

-- What the maillog follower read about a message still in the outbox: cleanup
-- named its Message-ID under queue_id; committed once qmgr took the queue
-- file in (or cleanup held or discarded it). A receipt goes with its row.
CREATE TABLE relay_receipts (
    message_id uuid        NOT NULL REFERENCES outbox (message_id) ON DELETE CASCADE,
    queue_id   text        NOT NULL,
    committed  boolean     NOT NULL DEFAULT false,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, queue_id)
);
CREATE INDEX relay_receipts_queue_id ON relay_receipts (queue_id);

-- One poll's receipt lines, in log order. A message-id line (p_messages[i]
-- is the outbox id it names, or NULL for other mail) starts the queue id
-- afresh: Postfix reuses short queue ids, and an uncommitted receipt under
-- one must not be committed by a later message's line.
CREATE FUNCTION maillog_receipts(p_queue_ids text[], p_messages uuid[], p_committed boolean[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_queue_ids), 0) LOOP
        IF p_committed[i] THEN
            UPDATE relay_receipts SET committed = true
            WHERE queue_id = p_queue_ids[i] AND NOT committed;
        ELSE
            DELETE FROM relay_receipts WHERE queue_id = p_queue_ids[i] AND NOT committed;
            INSERT INTO relay_receipts (message_id, queue_id)
            SELECT message_id, p_queue_ids[i] FROM outbox WHERE message_id = p_messages[i]
            ON CONFLICT DO NOTHING;
        END IF;
    END LOOP;
END
$$;
