-- Postfix reuses short queue ids and outbound_messages is never purged, yet a
-- line about one recipient (0009, 0013, 0015) updated every message ever stored
-- under its queue id whose recipient matched: a new message's bounce rewrote an
-- old, delivered one to failed (and raised webhooks for it). Such a line now
-- applies only to the message relayed last under its queue id, as lines about
-- a whole message already did. Queue ids are also one Postfix's own: a line of
-- one host's log applies only to a message relayed through that host's Postfix.
--
-- queue_host: the name of the host (the relaying instance's maillog_host, or
-- host name) whose Postfix queued the message as queue_id, stored with the
-- relay's answer. NULL for messages relayed before, or by a relay that did not
-- name it: their lines apply from any host's log, as before.
ALTER TABLE outbound_messages ADD COLUMN queue_host text;

DROP FUNCTION maillog_apply(text[], text[], text[], text[], boolean[], boolean[]);

-- Restated from 0015_maillog_message_lines.sql with p_host added, one message
-- picked for every line, and the suppression left to the follower's
-- p_hard_bounces as before.
CREATE FUNCTION maillog_apply(
    p_host text, p_queue_ids text[], p_recipients text[], p_statuses text[],
    p_details text[], p_hard_bounces boolean[], p_rewritten boolean[]
) RETURNS SETOF integer LANGUAGE plpgsql AS $$
DECLARE
    v_message uuid;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_queue_ids), 0) LOOP
        -- Relayed last, not accepted last: the one accepted first may have waited
        -- out retries.
        SELECT m.id INTO v_message FROM outbound_messages m
        WHERE m.queue_id = p_queue_ids[i] AND (m.queue_host = p_host OR m.queue_host IS NULL)
        ORDER BY (SELECT max(e.id) FROM outbound_events e
                  WHERE e.message_id = m.id AND e.event = 'relayed') DESC NULLS LAST
        LIMIT 1;
        CONTINUE WHEN NOT FOUND;
        IF p_recipients[i] IS NULL THEN
            IF maillog_message_line(v_message, p_statuses[i], p_details[i]) > 0 THEN
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
        INSERT INTO outbound_events (message_id, recipient, event, detail)
        VALUES (v_message, p_recipients[i], p_statuses[i], p_details[i]);
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
