-- An alias expanded to several members delivers each with its own line naming the
-- recipient (0013): the first makes the recipient delivered, the others change nothing,
-- yet each one's `delivered` event raised send.delivered again (0039 held back only a
-- later member's bounce or deferral). A receiver counting deliveries counted the
-- recipient twice. An event about a recipient an earlier line delivered now raises
-- nothing, whatever it says: one send.* event per change of the recipient's state.
-- The timeline still shows every line.
--
-- The earlier `delivered` event is found through an index of those events alone: the
-- look is made for every event about a recipient, and a message's events are many
-- when its recipients are.
CREATE INDEX outbound_events_delivered ON outbound_events (message_id, lower(recipient))
    WHERE event = 'delivered';

-- Restated from 0039_webhook_send_alias_members.sql with that check; the mapping and
-- the payload are unchanged.
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
    IF NEW.recipient IS NOT NULL AND EXISTS (
        SELECT FROM outbound_events
        WHERE message_id = NEW.message_id AND lower(recipient) = lower(NEW.recipient)
          AND event = 'delivered' AND id < NEW.id
    ) THEN
        RETURN NULL;  -- an alias member's line: the recipient stays delivered
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
