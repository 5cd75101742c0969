-- A relay attempt cut off between Postfix's 250 and storing it (the service
-- died, stopped while Postgres was away, or lost the connection after sending
-- the message) leaves its outbox row "unsettled": the claim sets the flag, a
-- deferral that surely did not reach Postfix or a release clears it, and a
-- stored outcome deletes the row. Sending such a row again would deliver the
-- message twice if Postfix had queued it, so the relay first asks Postfix's
-- log (postwarden_admin_api.send.receipts).
ALTER TABLE outbox ADD COLUMN unsettled boolean NOT NULL DEFAULT false;

-- What the maillog follower on `host` read about a message still in the
-- outbox: cleanup named its Message-ID under queue_id; committed once qmgr
-- took the queue file in. Queue ids are one Postfix's own, so lines of one
-- host never touch another's receipts. A receipt goes with its row.
CREATE TABLE relay_receipts (
    seq        bigint      GENERATED ALWAYS AS IDENTITY,
    message_id uuid        NOT NULL REFERENCES outbox (message_id) ON DELETE CASCADE,
    host       text        NOT NULL,
    queue_id   text        NOT NULL,
    committed  boolean     NOT NULL DEFAULT false,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, host, queue_id)
);
CREATE INDEX relay_receipts_queue_id ON relay_receipts (host, queue_id);

-- One poll's receipt lines, in log order. A line with p_committed false
-- starts its queue id afresh (the first line of a message, a Message-ID line,
-- a reject): Postfix reuses short queue ids, and a receipt never committed
-- must not be committed by a later message's line. When the line is our
-- Message-ID (p_messages[i], the outbox id), the receipt starts. FOR KEY SHARE:
-- a row the relay is deleting (its outcome stored) is waited for, then skipped.
CREATE FUNCTION maillog_receipts(
    p_host text, p_queue_ids text[], p_messages uuid[], p_committed boolean[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_queue_ids), 0) LOOP
        IF p_committed[i] THEN
            UPDATE relay_receipts SET committed = true
            WHERE host = p_host AND queue_id = p_queue_ids[i] AND NOT committed;
        ELSE
            DELETE FROM relay_receipts
            WHERE host = p_host AND queue_id = p_queue_ids[i] AND NOT committed;
            INSERT INTO relay_receipts (message_id, host, queue_id)
            SELECT message_id, p_host, p_queue_ids[i] FROM outbox WHERE message_id = p_messages[i]
            FOR KEY SHARE
            ON CONFLICT DO NOTHING;
        END IF;
    END LOOP;
END
$$;
