-- send.* webhooks as an API client reads them.
--
-- Order: every line of a maillog poll is applied in one statement (maillog_apply,
-- 0018), so every timeline event it wrote had the same now(): a recipient's
-- `deferred` and `delivered` carried one data.time, and a receiver that got them
-- out of order (a retried delivery is overtaken) could not tell which came last.
-- A timeline event now takes the clock as it is written, and send.* data carries
-- `sequence`, the event's outbound_events id: per message, it grows in the order
-- things happened (one message's events are written one transaction after the
-- other: the relay's before any log line about its queue id).
ALTER TABLE outbound_events ALTER COLUMN time SET DEFAULT clock_timestamp();

-- An endpoint's send_keys (NULL: every key, as before) limits its send.* events to
-- messages sent by those keys' rotation lines (api_keys.owner, 0030): the
-- successor of a listed key counts, and so does the key a listed one replaced.
ALTER TABLE webhook_endpoints ADD COLUMN send_keys text[];

-- The status every recipient being done settles a message in (NULL while one is
-- not): one definition for maillog_settle and the events. PL/pgSQL keeps its plan
-- (see 0017).
CREATE FUNCTION outbound_settled_status(p_message uuid) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT CASE
            WHEN bool_and(status = 'delivered') THEN 'delivered'
            WHEN bool_and(status IN ('bounced', 'failed')) THEN 'failed'
            ELSE 'partially_delivered' END
        FROM outbound_recipients WHERE message_id = p_message
        HAVING bool_and(status IN ('delivered', 'bounced', 'failed')));
END
$$;

-- Restated from 0029_maillog_settle_last_error.sql with the status taken from
-- outbound_settled_status; what it stores is unchanged.
CREATE OR REPLACE FUNCTION maillog_settle(p_message uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_status text := outbound_settled_status(p_message);
BEGIN
    UPDATE outbound_messages m
    SET status = v_status,
        last_error = CASE WHEN v_status = 'delivered' THEN NULL ELSE coalesce(
            (SELECT r.detail FROM outbound_events e
             JOIN outbound_recipients r
               ON r.message_id = e.message_id AND lower(r.address) = lower(e.recipient)
             WHERE e.message_id = p_message AND e.event IN ('bounced', 'failed')
               AND r.status IN ('bounced', 'failed') AND r.detail IS NOT NULL
             ORDER BY e.message_id DESC, e.id DESC LIMIT 1),
            (SELECT r.detail FROM outbound_recipients r
             WHERE r.message_id = p_message AND r.status IN ('bounced', 'failed')
               AND r.detail IS NOT NULL
             ORDER BY r.address LIMIT 1)) END,
        updated_at = now()
    WHERE m.id = p_message AND m.status <> v_status;
END
$$;

-- Restated from 0019_webhook_raise_locks_endpoints.sql with `sent_by`: the key that
-- sent the message a send.* event is about (NULL for other events: no filter). A key
-- not stored (the dev fallback's) belongs to no line a filter lists. A new argument
-- with a default: calls with three (an instance of the previous version) still work.
DROP FUNCTION webhook_raise(text, jsonb, text[]);
CREATE FUNCTION webhook_raise(event_type text, payload jsonb, targets text[] DEFAULT NULL,
                              sent_by text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
    v_line text;
BEGIN
    IF sent_by IS NOT NULL THEN  -- a send.* event: the milter's audit events pay nothing
        v_line := (SELECT owner FROM api_keys WHERE key_id = sent_by);
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM webhook_endpoints
        WHERE enabled AND (CASE WHEN targets IS NULL THEN event_type = ANY (events)
                                ELSE name = ANY (targets) END)
          AND (sent_by IS NULL OR send_keys IS NULL
               OR v_line IN (SELECT owner FROM api_keys WHERE key_id = ANY (send_keys)))
    ) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_events (type, payload) VALUES (event_type, payload)
        RETURNING id INTO new_id;
    INSERT INTO webhook_deliveries (event_id, endpoint_id)
        SELECT new_id, id FROM webhook_endpoints
        WHERE enabled AND (CASE WHEN targets IS NULL THEN event_type = ANY (events)
                                ELSE name = ANY (targets) END)
          AND (sent_by IS NULL OR send_keys IS NULL
               OR v_line IN (SELECT owner FROM api_keys WHERE key_id = ANY (send_keys)))
        FOR KEY SHARE;
    RETURN new_id;
END;
$$;

-- Restated from 0008_webhook_wanted.sql. `status` is the message's status once the
-- event is applied: the trigger runs before maillog_apply settles the message, so
-- every event from the log said "relayed", even the one that settled it. `metadata`
-- is the send request's, so a client whose 202 answer was lost can link events to
-- its own record. The sending key goes to webhook_raise for the endpoints' send_keys.
CREATE OR REPLACE FUNCTION webhook_send_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    event_type text := CASE NEW.event
        WHEN 'relayed' THEN 'send.queued'
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
        'sequence', NEW.id), NULL, m.key_id)
    FROM outbound_messages m WHERE m.id = NEW.message_id;
    RETURN NULL;
END;
$$;
