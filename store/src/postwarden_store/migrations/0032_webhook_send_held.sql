-- send.held: a message put in Postfix's hold queue (a milter's HOLD, as the milter's
-- quarantine; header_checks' or an access table's HOLD) got its `held` timeline event
-- (0015) and no webhook, so a client that relies on webhooks never learned that its
-- message waits for an administrator. That event now raises send.held: about the whole
-- message (no recipient), its status unchanged (a hold settles no recipient). The
-- other lines about a whole message already reach clients through the recipients
-- they settle, each with its own timeline event: expired raises send.bounced, and
-- discarded or deleted (a held message deleted too) send.failed.
--
-- Restated from 0031_webhook_send_order.sql with that mapping; the payload is unchanged.
CREATE OR REPLACE FUNCTION webhook_send_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    event_type text := CASE NEW.event
        WHEN 'relayed' THEN 'send.queued'
        WHEN 'held' THEN 'send.held'
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
