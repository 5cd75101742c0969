-- The send timeline's trigger built each event's payload (a join and a
-- jsonb object) before webhook_raise asked whether any endpoint wants the
-- event; with no subscriber, that was all the work of the trigger, twice per
-- sent message. It now asks first. webhook_raise keeps its own check: it is
-- also called directly.
CREATE FUNCTION webhook_wanted(event_type text, targets text[] DEFAULT NULL)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM webhook_endpoints
        WHERE enabled AND (CASE WHEN targets IS NULL THEN event_type = ANY (events)
                                ELSE name = ANY (targets) END))
$$;

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
        'status', m.status, 'attempts', m.attempts, 'key_id', m.key_id, 'tags', to_jsonb(m.tags),
        'recipient', NEW.recipient, 'detail', NEW.detail, 'time', NEW.time))
    FROM outbound_messages m WHERE m.id = NEW.message_id;
    RETURN NULL;
END;
$$;
