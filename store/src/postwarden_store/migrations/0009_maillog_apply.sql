-- Delivery tracking in one round trip per poll of Postfix's log, instead of
-- a transaction of four round trips per delivery line. The follower hands
-- over every line of a poll about a message of ours, in log order; each is
-- applied exactly as before:
--   * the recipient's status and detail (every message the queue id names:
--     Postfix reuses queue ids),
--   * one timeline event per recipient updated,
--   * the message's status, once none of its recipients is still on its way,
--   * the address suppressed on a hard bounce.
-- Answers the 1-based positions of the lines that named a recipient of ours;
-- the follower keeps the others waiting for their queue id.
CREATE FUNCTION maillog_apply(
    p_queue_ids text[], p_recipients text[], p_statuses text[], p_details text[],
    p_hard_bounces boolean[]
) RETURNS SETOF integer LANGUAGE plpgsql AS $$
DECLARE
    v_messages uuid[];
    v_message uuid;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_queue_ids), 0) LOOP
        WITH updated AS (
            UPDATE outbound_recipients r
            SET status = p_statuses[i], detail = p_details[i], updated_at = now()
            FROM outbound_messages m
            WHERE m.queue_id = p_queue_ids[i] AND r.message_id = m.id
              AND lower(r.address) = lower(p_recipients[i])
            RETURNING r.message_id
        )
        SELECT array_agg(message_id) INTO v_messages FROM updated;
        CONTINUE WHEN v_messages IS NULL;

        FOREACH v_message IN ARRAY v_messages LOOP
            INSERT INTO outbound_events (message_id, recipient, event, detail)
            VALUES (v_message, p_recipients[i], p_statuses[i], p_details[i]);
            UPDATE outbound_messages m SET status = s.status, updated_at = now()
            FROM (
                SELECT CASE
                    WHEN bool_and(status = 'delivered') THEN 'delivered'
                    WHEN bool_and(status IN ('bounced', 'failed')) THEN 'failed'
                    ELSE 'partially_delivered' END AS status
                FROM outbound_recipients WHERE message_id = v_message
                HAVING bool_and(status IN ('delivered', 'bounced', 'failed'))
            ) s
            WHERE m.id = v_message AND m.status <> s.status;
        END LOOP;

        IF p_hard_bounces[i] THEN
            INSERT INTO suppressions (address, reason, detail)
            VALUES (lower(p_recipients[i]), 'hard_bounce', p_details[i])
            ON CONFLICT (address) DO NOTHING;
        END IF;
        RETURN NEXT i;
    END LOOP;
END
$$;
