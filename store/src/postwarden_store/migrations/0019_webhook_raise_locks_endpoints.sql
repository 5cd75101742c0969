-- webhook_raise inserted a delivery for every endpoint its snapshot saw: an
-- endpoint deleted meanwhile (DELETE committed while the insert waited for its
-- row) failed the insert with a foreign-key error, and with it the statement
-- that raised the event: the milter's audit batch, a send's enqueue. The
-- endpoints are now locked as they are read (FOR KEY SHARE, which the foreign
-- key's check takes anyway): one deleted meanwhile is skipped, and a DELETE
-- that comes later waits for this transaction, then cascades.
-- Restated from 0005_webhooks.sql with the lock added.
CREATE OR REPLACE FUNCTION webhook_raise(event_type text, payload jsonb, targets text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM webhook_endpoints
        WHERE enabled AND (CASE WHEN targets IS NULL THEN event_type = ANY (events)
                                ELSE name = ANY (targets) END)
    ) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_events (type, payload) VALUES (event_type, payload)
        RETURNING id INTO new_id;
    INSERT INTO webhook_deliveries (event_id, endpoint_id)
        SELECT new_id, id FROM webhook_endpoints
        WHERE enabled AND (CASE WHEN targets IS NULL THEN event_type = ANY (events)
                                ELSE name = ANY (targets) END)
        FOR KEY SHARE;
    RETURN new_id;
END;
$$;
