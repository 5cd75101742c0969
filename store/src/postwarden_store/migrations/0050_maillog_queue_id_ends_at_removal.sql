-- Postfix reuses short queue ids (enable_long_queue_ids = no): once qmgr removed a
-- message's queue file (`QID: removed`), or an administrator deleted it (postsuper
-- -d), its queue id may name other mail. A line about that mail was applied to the
-- message relayed last under the id (0018) whenever the follower had not seen the
-- other mail arrive (it read its first lines before a restart, or another instance
-- did): a recipient delivered long ago turned bounced, and was suppressed. The
-- message now keeps when its queue file went (`queue_removed_at`, set by that line),
-- and no later line under its queue id is applied to it. A message relayed under the
-- id since is the one relayed last, and gets the id's lines as before.
ALTER TABLE outbound_messages ADD COLUMN queue_removed_at timestamptz;

-- Restated from 0033_maillog_hold_moves_and_logged_at.sql: a message whose queue file
-- is gone takes no line, and the line that says so marks it.
CREATE OR REPLACE FUNCTION maillog_apply(
    p_host text, p_queue_ids text[], p_recipients text[], p_statuses text[],
    p_details text[], p_hard_bounces boolean[], p_rewritten boolean[],
    p_logged timestamptz[] DEFAULT NULL
) RETURNS SETOF integer LANGUAGE plpgsql AS $$
DECLARE
    v_message uuid;
    v_removed boolean;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_queue_ids), 0) LOOP
        -- Relayed last, not accepted last: the one accepted first may have waited
        -- out retries.
        SELECT m.id, m.queue_removed_at IS NOT NULL INTO v_message, v_removed
        FROM outbound_messages m
        WHERE m.queue_id = p_queue_ids[i] AND (m.queue_host = p_host OR m.queue_host IS NULL)
        ORDER BY (SELECT max(e.id) FROM outbound_events e
                  WHERE e.message_id = m.id AND e.event = 'relayed') DESC NULLS LAST
        LIMIT 1;
        CONTINUE WHEN NOT FOUND OR v_removed;  -- other mail's, under the id reused
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
