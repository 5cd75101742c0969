-- A follower reading, in one read, a message's arrival (our Message-ID under its queue
-- id), its lines, then the next arrival under that id (Postfix reused it: other mail's,
-- or ours) dropped the lines between: that message of ours stayed relayed for good.
-- They are now applied to it (p_messages: the message each line is about, NULL for the
-- one relayed last under the id, as before), and only to it. Without it, a call is as
-- before (a previous version's, during an upgrade).

-- Restated from 0056_maillog_lines_before_an_arrival.sql with p_messages.
DROP FUNCTION maillog_apply(text, text[], text[], text[], text[], boolean[], boolean[],
                            timestamptz[], boolean);
CREATE FUNCTION maillog_apply(
    p_host text, p_queue_ids text[], p_recipients text[], p_statuses text[],
    p_details text[], p_hard_bounces boolean[], p_rewritten boolean[],
    p_logged timestamptz[] DEFAULT NULL, p_earlier boolean DEFAULT false,
    p_messages uuid[] DEFAULT NULL
) RETURNS SETOF integer LANGUAGE plpgsql AS $$
DECLARE
    v_message uuid;
    v_relayed timestamptz;
    v_removed timestamptz;
    v_open_until timestamptz;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_queue_ids), 0) LOOP
        -- Relayed last, not accepted last: the one accepted first may have waited
        -- out retries.
        SELECT m.id, relayed.at, m.queue_removed_at, m.queue_open_until
        INTO v_message, v_relayed, v_removed, v_open_until
        FROM outbound_messages m
        CROSS JOIN LATERAL (SELECT max(e.id) AS last, max(e.time) AS at
                            FROM outbound_events e
                            WHERE e.message_id = m.id AND e.event = 'relayed') relayed
        WHERE m.queue_id = p_queue_ids[i] AND (m.queue_host = p_host OR m.queue_host IS NULL)
          AND NOT (p_earlier AND m.queue_arrival_mark IS NOT NULL)
          AND (p_messages[i] IS NULL OR m.id = p_messages[i])
        ORDER BY relayed.last DESC NULLS LAST
        LIMIT 1;
        CONTINUE WHEN NOT FOUND;
        -- Other mail's, under the id reused.
        CONTINUE WHEN v_removed IS NOT NULL
                      AND NOT coalesce(coalesce(p_logged[i], now()) <= v_open_until, false);
        CONTINUE WHEN p_queue_ids[i] ~ '^[0-9A-F]+$'
                      AND p_logged[i] > v_relayed + interval '101 days';
        IF p_recipients[i] IS NULL THEN
            IF maillog_message_line(v_message, p_statuses[i], p_details[i], p_logged[i]) > 0
            THEN
                PERFORM maillog_settle(v_message);
            END IF;
            IF p_statuses[i] IN ('removed', 'deleted') OR v_removed IS NOT NULL THEN
                PERFORM maillog_queue_removed(v_message, p_logged[i]);
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
        IF v_removed IS NOT NULL THEN  -- a removal read before: one more day, or the end
            PERFORM maillog_queue_removed(v_message, p_logged[i]);
        END IF;
        IF p_hard_bounces[i] THEN
            INSERT INTO suppressions (address, reason, detail)
            VALUES (lower(p_recipients[i]), 'hard_bounce', p_details[i])
            ON CONFLICT (address) DO NOTHING;
        END IF;
        RETURN NEXT i;
    END LOOP;
END
$$;
