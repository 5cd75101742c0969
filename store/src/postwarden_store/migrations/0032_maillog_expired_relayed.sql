-- qmgr's "status=expired, returned to sender" settled only the deferred
-- recipients: one still "relayed" (its delivery lines lost, or ones this version
-- did not understand, such as soft_bounce's status=SOFTBOUNCE before it was read
-- as deferred) stayed relayed, and its message relayed, for good, though Postfix
-- returned it to the sender with the others. It now becomes bounced with the
-- expired detail as the deferred ones do (it has no last reply to add), and the
-- message settles (failed, or partially_delivered). Nobody is suppressed: no
-- reply said the address is bad.
-- Restated from 0015_maillog_message_lines.sql with only 'relayed' added to the
-- recipients an expired line settles.
CREATE OR REPLACE FUNCTION maillog_message_line(p_message uuid, p_status text, p_detail text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_open text[] := CASE p_status
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
