-- The send API's windows and times were the service host's clock, every later time the
-- database's:
-- - the sending limits' windows (a key's minute, a recipient's day, a key's day:
--   p_minute_start, p_day_start, p_day): instances whose clocks differ counted in
--   different windows, so a recipient got its day's limit once per instance a day
--   apart, a key its minute's once per instance seconds apart;
-- - a message's created_at and updated_at, its recipients' updated_at and its
--   `accepted` event (p_now): a host behind showed a message accepted minutes before
--   it was, one ahead accepted after it was relayed, and a search by `since` (or its
--   newest-first order) placed it among the messages of another time, where a client
--   polling for new ones missed it.
-- Both are now the database's (its transaction's clock), as the purge of ended windows
-- already went; a refusal's HINT is the seconds until its window ends, the Retry-After.
-- The four parameters are left unread, so that an instance of an earlier version, which
-- passes its host's clock, calls it unchanged and counts in the same windows.
-- Restated from 0038_send_outbox_due_by_database_clock.sql with only that changed.
CREATE OR REPLACE FUNCTION send_enqueue(
    p_id uuid, p_key_id text, p_message_id text, p_sender text, p_subject text,
    p_tags text[], p_metadata jsonb, p_now timestamptz,
    p_addresses text[], p_kinds text[], p_content bytea,
    p_suppression_keys text[], p_recipient_hashes text[],
    p_minute_start timestamptz, p_day_start timestamptz, p_day date,
    p_per_key_minute integer, p_per_recipient_day integer, p_per_key_day integer,
    p_idempotency_key text, p_answer jsonb
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    v_suppressed text[];
    v_counted text[];
    v_minute_start timestamptz := date_trunc('minute', now(), 'UTC');
    v_day_start timestamptz := date_trunc('day', now(), 'UTC');
    v_day_left text := ceil(extract(epoch FROM v_day_start + interval '1 day' - now()));
BEGIN
    SELECT array_agg(s.address) INTO v_suppressed
    FROM suppressions s WHERE s.address = ANY (p_suppression_keys);
    IF v_suppressed IS NOT NULL THEN
        RETURN v_suppressed;
    END IF;

    WITH hit AS (
        INSERT INTO outbound_rate_counters AS c (scope, subject, window_start, count)
        SELECT 'recipient_day', h, v_day_start, 1
        FROM unnest(p_recipient_hashes) AS h ORDER BY h
        ON CONFLICT (scope, subject, window_start) DO UPDATE SET count = c.count + 1
        WHERE c.count < p_per_recipient_day
        RETURNING c.subject
    )
    SELECT coalesce(array_agg(subject), '{}') INTO v_counted FROM hit;
    IF cardinality(v_counted) < cardinality(p_recipient_hashes) THEN
        RAISE EXCEPTION 'recipient_rate_limited' USING HINT = v_day_left,
            DETAIL = array_to_string(ARRAY(SELECT h FROM unnest(p_recipient_hashes) AS h
                                           WHERE h <> ALL (v_counted)), ',');
    END IF;

    INSERT INTO outbound_messages
        (id, key_id, message_id, sender, subject, recipient_count, size, tags, metadata,
         created_at, updated_at)
    VALUES (p_id, p_key_id, p_message_id, p_sender, p_subject, cardinality(p_addresses),
            octet_length(p_content), p_tags, p_metadata, now(), now());
    INSERT INTO outbound_recipients (message_id, address, kind, updated_at)
    SELECT p_id, r.address, r.kind, now() FROM unnest(p_addresses, p_kinds) AS r (address, kind);
    INSERT INTO outbound_events (message_id, time, event) VALUES (p_id, now(), 'accepted');
    INSERT INTO outbox (message_id, envelope_from, recipients, content, next_attempt_at)
    VALUES (p_id, p_sender, p_addresses, p_content, now());

    IF p_idempotency_key IS NOT NULL THEN
        UPDATE send_idempotency SET state = 'done', response_status = 202,
                                    response_body = p_answer
        WHERE key_id = p_key_id AND idempotency_key = p_idempotency_key
          AND state = 'in_progress' AND claim_id = p_id;
        IF NOT FOUND THEN  -- our claim was taken over: the retry that took it sends
            RAISE EXCEPTION 'idempotency_request_in_progress';
        END IF;
    END IF;

    INSERT INTO outbound_rate_counters AS c (scope, subject, window_start, count)
    VALUES ('key_minute', p_key_id, v_minute_start, 1)
    ON CONFLICT (scope, subject, window_start) DO UPDATE SET count = c.count + 1
    WHERE c.count < p_per_key_minute;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rate_limited' USING HINT =
            ceil(extract(epoch FROM v_minute_start + interval '1 minute' - now()));
    END IF;

    INSERT INTO outbound_daily_usage AS u (key_id, day, messages, recipients)
    VALUES (p_key_id, (v_day_start AT TIME ZONE 'UTC')::date, 1,
            cardinality(p_recipient_hashes))
    ON CONFLICT (key_id, day) DO UPDATE
    SET messages = u.messages + 1, recipients = u.recipients + EXCLUDED.recipients
    WHERE u.messages < p_per_key_day;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'daily_quota_exceeded' USING HINT = v_day_left;
    END IF;
    RETURN NULL;
END
$$;
