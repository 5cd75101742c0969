-- A recipient Postfix rewrote to an alias's members stays delivered once one member has
-- it (0013): a later member's bounce or deferral is on the timeline but changes nothing.
-- Its event still raised send.bounced or send.deferred about the recipient, so a
-- receiver that keeps each recipient's newest event (by data.sequence, as the docs say)
-- held it bounced or deferred while the API said delivered. Such an event now raises
-- nothing: an event about a recipient other than `delivered` is raised only when the
-- recipient is not delivered once it is applied (maillog_apply updates the recipient
-- before it writes the event; no other line takes a recipient back from delivered).
--
-- Restated from 0033_maillog_hold_moves_and_logged_at.sql with that check; the mapping
-- and the payload are unchanged.
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
    IF NEW.recipient IS NOT NULL AND NEW.event <> 'delivered' AND EXISTS (
        SELECT FROM outbound_recipients
        WHERE message_id = NEW.message_id AND lower(address) = lower(NEW.recipient)
          AND status = 'delivered'
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
