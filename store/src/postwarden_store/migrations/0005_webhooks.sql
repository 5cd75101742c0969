-- Webhooks: endpoints, events and one delivery per (event, endpoint).
-- Events come from the trigger on audit_events below (so the milter never
-- makes an HTTP call), from webhook_raise() called by the admin service
-- (policy activation, send status) and from replays. The admin service's
-- worker claims due deliveries with FOR UPDATE SKIP LOCKED.

CREATE TABLE webhook_endpoints (
    id                 bigserial   PRIMARY KEY,
    name               text        NOT NULL UNIQUE,
    url                text        NOT NULL,
    kind               text        NOT NULL CHECK (kind IN ('webhook', 'slack', 'api_call')),
    events             text[]      NOT NULL DEFAULT '{}',
    -- api_call only: custom headers (a JSON object, encrypted: they often hold
    -- tokens) and the JSON body template.
    headers_ciphertext text,
    body_template      jsonb,
    secret_ciphertext  text,       -- the whsec_ signing secret, encrypted
    enabled            boolean     NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_events (
    id         bigserial   PRIMARY KEY,
    event_id   uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),  -- the webhook-id header
    type       text        NOT NULL,
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id               bigserial   PRIMARY KEY,
    event_id         bigint      NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id      bigint      NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer     NOT NULL DEFAULT 0,
    -- When pending: when the next attempt is due. While an attempt runs it is
    -- pushed past the attempt's timeout (a lease), so a crashed worker's
    -- delivery is retried instead of lost.
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    delivered_at     timestamptz,
    replay_of        bigint      REFERENCES webhook_deliveries (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id DESC);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

-- Raise an event: one delivery for every enabled endpoint subscribed to
-- `event_type`, or, when `targets` is given, for the enabled endpoints of
-- those names (the policy action `notify:`). Returns the event's row id, or
-- NULL when no endpoint wants it (nothing is stored then).
CREATE FUNCTION webhook_raise(event_type text, payload jsonb, targets text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM webhook_endpoints
        WHERE enabled AND (CASE WHEN targets IS NULL THEN event_type = ANY (events)
                                ELSE name = ANY (targets) END)
    ) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_events (type, payload) VALUES (event_type, payload)
        RETURNING id INTO new_id;
    INSERT INTO webhook_deliveries (event_id, endpoint_id)
        SELECT new_id, id FROM webhook_endpoints
        WHERE enabled AND (CASE WHEN targets IS NULL THEN event_type = ANY (events)
                                ELSE name = ANY (targets) END);
    RETURN new_id;
END;
$$;

-- Which change kinds an audit row's `changes` array holds ("kind" or "type" key).
CREATE FUNCTION webhook_audit_has_change(changes jsonb, wanted text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM jsonb_array_elements(
            CASE WHEN jsonb_typeof(changes) = 'array' THEN changes ELSE '[]'::jsonb END) c
        WHERE coalesce(c->>'kind', c->>'type') = wanted)
$$;

-- Milter verdicts become events. Metadata only: never the subject or body.
CREATE FUNCTION webhook_audit_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    payload jsonb;
BEGIN
    IF NEW.action NOT IN ('reject', 'quarantine') AND NEW.changes = '[]'::jsonb
       AND cardinality(NEW.notify) = 0 THEN
        RETURN NULL;
    END IF;
    payload := jsonb_build_object(
        'audit_event_id', NEW.event_id, 'time', NEW.time, 'instance', NEW.instance,
        'queue_id', NEW.queue_id, 'message_uid', NEW.message_uid,
        'message_id', NEW.message_id, 'sender', NEW.sender,
        'recipients', to_jsonb(NEW.recipients), 'action', NEW.action,
        'smtp_reply', NEW.smtp_reply, 'rules', to_jsonb(NEW.rules),
        'changes', NEW.changes, 'policy_hash', NEW.policy_hash);
    IF NEW.action = 'reject' THEN
        PERFORM webhook_raise('message.rejected', payload);
    ELSIF NEW.action = 'quarantine' THEN
        PERFORM webhook_raise('message.quarantined', payload);
    END IF;
    IF webhook_audit_has_change(NEW.changes, 'html_sanitized') THEN
        PERFORM webhook_raise('message.sanitized', payload);
    END IF;
    IF webhook_audit_has_change(NEW.changes, 'attachment_stripped') THEN
        PERFORM webhook_raise('message.attachment_stripped', payload);
    END IF;
    IF cardinality(NEW.notify) > 0 THEN
        PERFORM webhook_raise('message.notify', payload, NEW.notify);
    END IF;
    RETURN NULL;
END;
$$;

-- A row trigger on the partitioned parent is cloned onto every partition,
-- present and future (PostgreSQL 13+).
CREATE TRIGGER audit_events_webhooks AFTER INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION webhook_audit_events();

-- Policy activation (the admin service writes active_policies) raises
-- policy.activated in the same transaction.
CREATE FUNCTION webhook_policy_activated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook_raise('policy.activated', jsonb_build_object(
        'policy_name', NEW.policy_name, 'revision_id', NEW.revision_id,
        'content_hash', (SELECT content_hash FROM policy_revisions WHERE id = NEW.revision_id),
        'activated_by', NEW.activated_by, 'time', NEW.activated_at));
    RETURN NULL;
END;
$$;
CREATE TRIGGER active_policies_webhooks AFTER INSERT OR UPDATE ON active_policies
    FOR EACH ROW EXECUTE FUNCTION webhook_policy_activated();

-- The send API's timeline (outbound_events) raises send.* events: Postfix
-- queued it (relayed), delivered, deferred, bounced, failed. Acceptance into
-- the outbox raises nothing (the client got its 202 answer).
CREATE FUNCTION webhook_send_event() RETURNS trigger
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
    IF event_type IS NULL THEN
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
CREATE TRIGGER outbound_events_webhooks AFTER INSERT ON outbound_events
    FOR EACH ROW EXECUTE FUNCTION webhook_send_event();
