-- A short queue id (enable_long_queue_ids = no: hexadecimal, from the queue file's
-- inode and the microsecond it was made) names other mail once Postfix removed our
-- message's file and the inode came back. Where the line saying so (qmgr's `removed`,
-- 0050) was never read (the log rotated away while no instance read it, lines dropped
-- while PostgreSQL was away), every later line under the id was applied to our
-- message, for good: a recipient delivered long ago turned bounced, and was
-- suppressed. Postfix keeps no message queued past maximal_queue_lifetime, at most 100
-- days (8640000 seconds, its upper limit): a line under a short id logged over 101 days
-- after the message was relayed (a day for the queue run that expires it and for stamps
-- in another zone) is no longer its. A long id (its file's second and inode, `z` between
-- them) is never reused: its lines are the message's whenever they come (a message
-- released from the hold queue after months).

-- Restated from 0050_maillog_queue_id_ends_at_removal.sql with that window.
CREATE OR REPLACE FUNCTION maillog_apply(
    p_host text, p_queue_ids text[], p_recipients text[], p_statuses text[],
    p_details text[], p_hard_bounces boolean[], p_rewritten boolean[],
    p_logged timestamptz[] DEFAULT NULL
) RETURNS SETOF integer LANGUAGE plpgsql AS $$
DECLARE
    v_message uuid;
    v_removed boolean;
    v_relayed timestamptz;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_queue_ids), 0) LOOP
        -- Relayed last, not accepted last: the one accepted first may have waited
        -- out retries.
        SELECT m.id, m.queue_removed_at IS NOT NULL, relayed.at
        INTO v_message, v_removed, v_relayed
        FROM outbound_messages m
        CROSS JOIN LATERAL (SELECT max(e.id) AS last, max(e.time) AS at
                            FROM outbound_events e
                            WHERE e.message_id = m.id AND e.event = 'relayed') relayed
        WHERE m.queue_id = p_queue_ids[i] AND (m.queue_host = p_host OR m.queue_host IS NULL)
        ORDER BY relayed.last DESC NULLS LAST
        LIMIT 1;
        CONTINUE WHEN NOT FOUND OR v_removed;  -- other mail's, under the id reused
        CONTINUE WHEN p_queue_ids[i] ~ '^[0-9A-F]+$'
                      AND p_logged[i] > v_relayed + interval '101 days';
        IF p_recipients[i] IS NULL THEN
            IF p_statuses[i] IN ('removed', 'deleted') THEN
                UPDATE outbound_messages SET queue_removed_at = now()
                WHERE id = v_message;
            END IF;
            IF maillog_message_line(v_message, p_statuses[i], p_details[i], p_logged[i]) > 0
            THEN
                PERFORM maillog_settle(v_message);
            END IF;
            RETURN NEXT i;
            CONTINUE;
        END IF;
        UPDATE outbound_recipients
        SET status = CASE WHEN p_rewritten[i] AND status = 'delivered'
                          THEN status ELSE p_statuses[i] END,
            detail = CASE WHEN p_rewritten[i] AND status = 'delivered'
                          THEN detail ELSE p_details[i] END,
            updated_at = now()
        WHERE message_id = v_message AND lower(address) = lower(p_recipients[i]);
        CONTINUE WHEN NOT FOUND;
        INSERT INTO outbound_events (message_id, recipient, event, detail, logged_at)
        VALUES (v_message, p_recipients[i], p_statuses[i], p_details[i], p_logged[i]);
        PERFORM maillog_settle(v_message);
        IF p_hard_bounces[i] THEN
            INSERT INTO suppressions (address, reason, detail)
            VALUES (lower(p_recipients[i]), 'hard_bounce', p_details[i])
            ON CONFLICT (address) DO NOTHING;
        END IF;
        RETURN NEXT i;
    END LOOP;
END
$$;
