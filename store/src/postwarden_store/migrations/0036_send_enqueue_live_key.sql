-- A key revoked (or expired) while its request's body still came in was checked only
-- at the request's admission: the message was stored and sent. A holder of a leaked
-- key could open requests before the revocation and finish them after it. The enqueue
-- now refuses a stored key that is no longer live, in the same call (no round trip of
-- its own); a key id not stored (the development fallback's) passes, as at admission.
--
-- Restated from 0017_send_cpu.sql with that check first.
CREATE OR REPLACE PROCEDURE send_enqueue_flushed(
    p_id uuid, p_key_id text, p_message_id text, p_sender text, p_subject text,
    p_tags text[], p_metadata jsonb, p_now timestamptz,
    p_addresses text[], p_kinds text[], p_content bytea,
    p_suppression_keys text[], p_recipient_hashes text[],
    p_minute_start timestamptz, p_day_start timestamptz, p_day date,
    p_per_key_minute integer, p_per_recipient_day integer, p_per_key_day integer,
    p_idempotency_key text, p_answer jsonb, INOUT p_suppressed text[] DEFAULT NULL
) LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM api_keys WHERE key_id = p_key_id AND NOT (
            revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()))) THEN
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
