-- send.released: the follower read none of postsuper's hold lines, so a message an
-- administrator held (postsuper -h) got no `held` event, and one released (postsuper -H)
-- no event at all: after a milter's hold, its `held` event stayed the last one until a
-- recipient's result came, and a client could not tell a message still held from one
-- let out to be delivered. The follower now reads `QID: placed on hold` as `held`
-- (noted as 0015 notes it; it raises send.held, 0032) and `QID: released from hold` as
-- `released`: a timeline event about the whole message (no recipient) that raises
-- send.released. Like a hold, a release settles no recipient.
--
-- When Postfix logged a line: a timeline event from the log carried only the time the
-- service read the line (outbound_events.time), so lines read after a stop or an
-- outage all showed the time they were caught up. Each event from the log now also
-- keeps the time its line says it was logged (`logged_at`; NULL for the relay's own
-- events, for lines whose stamp could not be read, and for those applied before).
-- send.* webhooks carry it too.
ALTER TABLE outbound_events ADD COLUMN logged_at timestamptz;

-- Restated from 0018_maillog_one_message_per_queue_id.sql with p_logged, the time
-- each line was logged. Its default keeps a call with seven arguments (an instance
-- of the previous version, during an upgrade) working: its events get no logged_at.
DROP FUNCTION maillog_apply(text, text[], text[], text[], text[], boolean[], boolean[]);
CREATE FUNCTION maillog_apply(
    p_host text, p_queue_ids text[], p_recipients text[], p_statuses text[],
    p_details text[], p_hard_bounces boolean[], p_rewritten boolean[],
    p_logged timestamptz[] DEFAULT NULL
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

-- Restated from 0015_maillog_message_lines.sql with `released` noted as `held` is, and
-- p_logged: the events it writes keep it.
DROP FUNCTION maillog_message_line(uuid, text, text);
CREATE FUNCTION maillog_message_line(p_message uuid, p_status text, p_detail text,
                                     p_logged timestamptz DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_open text[] := CASE p_status
        WHEN 'expired' THEN ARRAY['deferred']
        WHEN 'removed' THEN ARRAY['relayed']
        ELSE ARRAY['relayed', 'deferred'] END;
    v_settled integer;
BEGIN
    IF p_status IN ('held', 'released') THEN
        INSERT INTO outbound_events (message_id, event, detail, logged_at)
        VALUES (p_message, p_status, p_detail, p_logged);
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
        INSERT INTO outbound_events (message_id, recipient, event, detail, logged_at)
        SELECT p_message, address, status, detail, p_logged FROM changed
        RETURNING 1
    )
    SELECT count(*) INTO v_settled FROM noted;
    RETURN v_settled;
END
$$;

-- Restated from 0032_webhook_send_held.sql with `released` mapped and `logged_at` in
-- the payload.
CREATE OR REPLACE FUNCTION webhook_send_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    event_type text := CASE NEW.event
        WHEN 'relayed' THEN 'send.queued'
        WHEN 'held' THEN 'send.held'
        WHEN 'released' THEN 'send.released'
        WHEN 'delivered' THEN 'send.delivered'
        WHEN 'deferred' THEN 'send.deferred'
        WHEN 'relay_deferred' THEN 'send.deferred'
        WHEN 'bounced' THEN 'send.bounced'
        WHEN 'failed' THEN 'send.failed'
    END;
BEGIN
    IF event_type IS NULL OR NOT webhook_wanted(event_type) THEN
        RETURN NULL;
    END IF;
    PERFORM webhook_raise(event_type, jsonb_build_object(
        'id', m.id, 'message_id', m.message_id, 'sender', m.sender, 'queue_id', m.queue_id,
        -- Only an event that ends a recipient can settle the message: the others skip
        -- the look at every recipient.
        'status', CASE WHEN NEW.event IN ('delivered', 'bounced', 'failed')
                       THEN coalesce(outbound_settled_status(m.id), m.status)
                       ELSE m.status END,
        'attempts', m.attempts,
        'key_id', m.key_id, 'tags', to_jsonb(m.tags), 'metadata', m.metadata,
        'recipient', NEW.recipient, 'detail', NEW.detail, 'time', NEW.time,
        'logged_at', NEW.logged_at, 'sequence', NEW.id), NULL, m.key_id)
    FROM outbound_messages m WHERE m.id = NEW.message_id;
    RETURN NULL;
END;
$$;
