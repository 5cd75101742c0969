-- Lines about a whole message, where no delivery line will ever come for some
-- recipients, used to leave them "relayed" or "deferred" (and the message
-- "relayed") for good:
--   expired    qmgr gave up on the deferred recipients (maximal_queue_lifetime)
--              and returned the message to its sender: they become bounced (no
--              suppression: the last reply was a temporary one);
--   discarded  cleanup or smtpd dropped the message (a milter's, header_checks'
--              or an access table's DISCARD) after Postfix answered 250: every
--              recipient not done fails;
--   deleted    an administrator deleted it (postsuper -d): the same;
--   removed    qmgr is done with every recipient it took. One left "relayed" was
--              refused at RCPT, but only a message whose answer the relay read
--              from the log (event found_in_log) can have such a recipient: for
--              any other, the relay stored Postfix's refusals, and a recipient
--              left without a line had its line lost or unmatched, so it stays;
--   held       the message went to the hold queue: only the timeline notes it.
-- The follower passes them with p_recipients[i] NULL. They apply to the message
-- relayed last under the queue id (Postfix reuses short queue ids); each changed
-- recipient gets its own timeline line, so webhooks report it like any other.
CREATE FUNCTION maillog_settle(p_message uuid) RETURNS void LANGUAGE sql AS $$
    UPDATE outbound_messages m SET status = s.status, updated_at = now()
    FROM (
        SELECT CASE
            WHEN bool_and(status = 'delivered') THEN 'delivered'
            WHEN bool_and(status IN ('bounced', 'failed')) THEN 'failed'
            ELSE 'partially_delivered' END AS status
        FROM outbound_recipients WHERE message_id = p_message
        HAVING bool_and(status IN ('delivered', 'bounced', 'failed'))
    ) s
    WHERE m.id = p_message AND m.status <> s.status;
$$;

-- How many recipients it settled.
CREATE FUNCTION maillog_message_line(p_message uuid, p_status text, p_detail text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_open text[] := CASE p_status
        WHEN 'expired' THEN ARRAY['deferred']
        WHEN 'removed' THEN ARRAY['relayed']
        ELSE ARRAY['relayed', 'deferred'] END;
    v_settled integer;
BEGIN
    IF p_status = 'held' THEN
        INSERT INTO outbound_events (message_id, event, detail)
        VALUES (p_message, 'held', p_detail);
        RETURN 0;
    END IF;
    IF p_status = 'removed' AND NOT EXISTS (
        SELECT FROM outbound_events WHERE message_id = p_message AND event = 'found_in_log'
    ) THEN
        RETURN 0;  -- most messages: everything settled already
    END IF;
    WITH changed AS (
        UPDATE outbound_recipients
        SET status = CASE WHEN p_status = 'expired' THEN 'bounced' ELSE 'failed' END,
            -- The last reply stays readable: why it was deferred until it expired.
            detail = p_detail || coalesce(' (last: ' || detail || ')', ''),
            updated_at = now()
        WHERE message_id = p_message AND status = ANY(v_open)
        RETURNING address, status, detail
    ), noted AS (
        INSERT INTO outbound_events (message_id, recipient, event, detail)
        SELECT p_message, address, status, detail FROM changed
        RETURNING 1
    )
    SELECT count(*) INTO v_settled FROM noted;
    RETURN v_settled;
END
$$;

CREATE OR REPLACE FUNCTION maillog_apply(
    p_queue_ids text[], p_recipients text[], p_statuses text[], p_details text[],
    p_hard_bounces boolean[], p_rewritten boolean[]
) RETURNS SETOF integer LANGUAGE plpgsql AS $$
DECLARE
    v_message uuid;
    v_matched boolean;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_queue_ids), 0) LOOP
        IF p_recipients[i] IS NULL THEN
            SELECT m.id INTO v_message FROM outbound_messages m
            WHERE m.queue_id = p_queue_ids[i]
            ORDER BY (SELECT max(e.id) FROM outbound_events e
                      WHERE e.message_id = m.id AND e.event = 'relayed') DESC NULLS LAST
            LIMIT 1;
            CONTINUE WHEN NOT FOUND;
            IF maillog_message_line(v_message, p_statuses[i], p_details[i]) > 0 THEN
                PERFORM maillog_settle(v_message);
            END IF;
            RETURN NEXT i;
            CONTINUE;
        END IF;
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
            PERFORM maillog_settle(v_message);
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
