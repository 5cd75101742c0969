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

--
-- qmgr's `removed` ended the id at once, and any local user can log one (`logger -t
-- postfix/qmgr`): a forged one read while a recipient still waited for its result
-- stopped its tracking for good. Postfix removes a queue file once every recipient in
-- it is done, so a `removed` read while one of ours still waits (relayed or deferred:
-- its lines lost, or the line forged) leaves the id the message's until a day after
-- the last line applied to it (`queue_open_until`, in the log's time; Postfix retries
-- a deferred recipient within maximal_backoff_time, 4000 s by default), or until every
-- recipient has its result.
ALTER TABLE outbound_messages ADD COLUMN queue_open_until timestamptz;

-- A removal line read for the message, or a line applied to it after one: its queue id
-- ends now if every recipient has its result, else a day after p_logged.
CREATE FUNCTION maillog_queue_removed(p_message uuid, p_logged timestamptz)
RETURNS void LANGUAGE sql AS $$
    UPDATE outbound_messages SET
        queue_removed_at = coalesce(queue_removed_at, now()),
        queue_open_until = CASE WHEN EXISTS (
            SELECT FROM outbound_recipients
            WHERE message_id = p_message AND status NOT IN ('delivered', 'bounced', 'failed')
        ) THEN coalesce(p_logged, now()) + interval '1 day' END
    WHERE id = p_message
$$;

-- Restated from 0050_maillog_queue_id_ends_at_removal.sql with that window, and the
-- day a removal leaves a recipient waiting.
CREATE OR REPLACE FUNCTION maillog_apply(
    p_host text, p_queue_ids text[], p_recipients text[], p_statuses text[],
    p_details text[], p_hard_bounces boolean[], p_rewritten boolean[],
    p_logged timestamptz[] DEFAULT NULL
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
