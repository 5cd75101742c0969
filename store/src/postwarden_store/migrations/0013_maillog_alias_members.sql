-- A recipient Postfix rewrote (virtual aliases) can stand for several members,
-- each with its own delivery line naming the address we gave (orig_to=). The
-- last line used to win: one member delivered and another bounced made the
-- recipient bounced and the message failed. Now a member's line never takes a
-- rewritten recipient back from delivered; the timeline still shows every line.
-- The follower passes p_rewritten (orig_to= was present) for each line.
DROP FUNCTION maillog_apply(text[], text[], text[], text[], boolean[]);

CREATE FUNCTION maillog_apply(
    p_queue_ids text[], p_recipients text[], p_statuses text[], p_details text[],
    p_hard_bounces boolean[], p_rewritten boolean[]
) RETURNS SETOF integer LANGUAGE plpgsql AS $$
DECLARE
    v_message uuid;
    v_matched boolean;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_queue_ids), 0) LOOP
        v_matched := false;
        -- Message by message, each recipient found by its primary key's prefix:
        -- one UPDATE joining both tables was planned as a sequential scan of
        -- every recipient while the tables were young and unanalyzed.
        FOR v_message IN SELECT id FROM outbound_messages WHERE queue_id = p_queue_ids[i] LOOP
            UPDATE outbound_recipients
            SET status = CASE WHEN p_rewritten[i] AND status = 'delivered'
                              THEN status ELSE p_statuses[i] END,
                detail = CASE WHEN p_rewritten[i] AND status = 'delivered'
                              THEN detail ELSE p_details[i] END,
                updated_at = now()
            WHERE message_id = v_message AND lower(address) = lower(p_recipients[i]);
            CONTINUE WHEN NOT FOUND;
            v_matched := true;
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
        CONTINUE WHEN NOT v_matched;

        IF p_hard_bounces[i] THEN
            INSERT INTO suppressions (address, reason, detail)
            VALUES (lower(p_recipients[i]), 'hard_bounce', p_details[i])
            ON CONFLICT (address) DO NOTHING;
        END IF;
        RETURN NEXT i;
    END LOOP;
END
$$;
