-- 0036's check of the key took no lock: a revocation that committed after the check
-- but before the enqueue's commit was answered to the admin, and the message was then
-- stored and sent all the same. The check now holds the key's row (FOR SHARE) until the
-- enqueue commits, so a revocation waits for a send it did not stop, and a send that
-- comes after it sees the key revoked; concurrent sends of one key share the lock.
-- A key id not stored (the development fallback's) passes, as before.
--
-- Restated from 0036_send_enqueue_live_key.sql with only the check changed.
CREATE OR REPLACE PROCEDURE send_enqueue_flushed(
    p_id uuid, p_key_id text, p_message_id text, p_sender text, p_subject text,
    p_tags text[], p_metadata jsonb, p_now timestamptz,
    p_addresses text[], p_kinds text[], p_content bytea,
    p_suppression_keys text[], p_recipient_hashes text[],
    p_minute_start timestamptz, p_day_start timestamptz, p_day date,
    p_per_key_minute integer, p_per_recipient_day integer, p_per_key_day integer,
    p_idempotency_key text, p_answer jsonb, INOUT p_suppressed text[] DEFAULT NULL
) LANGUAGE plpgsql AS $$
DECLARE
    v_live boolean;
BEGIN
    SELECT revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) INTO v_live
    FROM api_keys WHERE key_id = p_key_id FOR SHARE;
    IF NOT v_live THEN  -- NULL: no such stored key
        RAISE EXCEPTION 'key_not_live';
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    p_suppressed := send_enqueue(
        p_id, p_key_id, p_message_id, p_sender, p_subject, p_tags, p_metadata, p_now,
        p_addresses, p_kinds, p_content, p_suppression_keys, p_recipient_hashes,
        p_minute_start, p_day_start, p_day, p_per_key_minute, p_per_recipient_day,
        p_per_key_day, p_idempotency_key, p_answer);
    COMMIT;  -- without waiting: set_config's value ends with its transaction
    IF p_suppressed IS NULL THEN
        PERFORM pg_logical_emit_message(true, 'postwarden', '');  -- commits waiting
    END IF;
END
$$;
