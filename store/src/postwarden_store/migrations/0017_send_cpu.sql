-- CPU per sent message.
--
-- maillog_settle (once per delivery line) and webhook_wanted (once per timeline
-- event that can raise a webhook: two per sent message) were SQL functions that
-- cannot be inlined (an UPDATE; an EXISTS sublink), and PostgreSQL before 18
-- plans every statement of such a function at every call: about 0.3 ms of the
-- 1.5 ms each message cost Postgres. In PL/pgSQL their plans are kept for the
-- session. The bodies are unchanged.
CREATE OR REPLACE FUNCTION maillog_settle(p_message uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbound_messages m SET status = s.status, updated_at = now()
    FROM (
        SELECT CASE
            WHEN bool_and(status = 'delivered') THEN 'delivered'
            WHEN bool_and(status IN ('bounced', 'failed')) THEN 'failed'
            ELSE 'partially_delivered' END AS status
        FROM outbound_recipients WHERE message_id = p_message
        HAVING bool_and(status IN ('delivered', 'bounced', 'failed'))
    ) s
    WHERE m.id = p_message AND m.status <> s.status;
END
$$;

CREATE OR REPLACE FUNCTION webhook_wanted(event_type text, targets text[] DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM webhook_endpoints
        WHERE enabled AND (CASE WHEN targets IS NULL THEN event_type = ANY (events)
                                ELSE name = ANY (targets) END));
END
$$;

-- Indexes no query can use, written at every message (and the tags one again
-- when the relay stores the queue id): the tag filter reads `$tag = ANY(tags)`,
-- which a GIN index does not serve, and recipients are only ever looked up
-- under their message (the primary key's prefix).
DROP INDEX outbound_messages_tags;
DROP INDEX outbound_recipients_address;

-- Accepting a message took two round trips: send_enqueue, committed without
-- waiting for the disk so the key's counters are not locked meanwhile, then a
-- transaction of its own whose commit waits for the WAL up to itself
-- (postwarden_admin_api.commits). A procedure may commit in between: this one
-- does both in one call, outside a transaction block only (inside one, the
-- caller calls send_enqueue and commits).
CREATE PROCEDURE send_enqueue_flushed(
    p_id uuid, p_key_id text, p_message_id text, p_sender text, p_subject text,
    p_tags text[], p_metadata jsonb, p_now timestamptz,
    p_addresses text[], p_kinds text[], p_content bytea,
    p_suppression_keys text[], p_recipient_hashes text[],
    p_minute_start timestamptz, p_day_start timestamptz, p_day date,
    p_per_key_minute integer, p_per_recipient_day integer, p_per_key_day integer,
    p_idempotency_key text, p_answer jsonb, INOUT p_suppressed text[] DEFAULT NULL
) LANGUAGE plpgsql AS $$
BEGIN
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

-- The relay now stores the outcomes of several messages in one transaction, each
-- deleting its outbox row, and a relay_receipts row goes with its outbox row. This
-- function locks (FOR KEY SHARE) the outbox row of each receipt it adds, and touches
-- receipts of other rows too, line by line in log order: against such a transaction
-- it could hold one row the relay wants while it waited for another the relay holds.
-- Both now lock every outbox row involved first, in message_id order. Restated from
-- 0011_relay_receipts.sql with only that first statement added.
CREATE OR REPLACE FUNCTION maillog_receipts(
    p_host text, p_queue_ids text[], p_messages uuid[], p_committed boolean[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM outbox
    WHERE message_id IN (SELECT unnest(p_messages)
                         UNION SELECT message_id FROM relay_receipts
                               WHERE host = p_host AND queue_id = ANY (p_queue_ids))
    ORDER BY message_id FOR KEY SHARE;
    FOR i IN 1 .. coalesce(cardinality(p_queue_ids), 0) LOOP
        IF p_committed[i] THEN
            UPDATE relay_receipts SET committed = true
            WHERE host = p_host AND queue_id = p_queue_ids[i] AND NOT committed;
        ELSE
            DELETE FROM relay_receipts
            WHERE host = p_host AND queue_id = p_queue_ids[i] AND NOT committed;
            INSERT INTO relay_receipts (message_id, host, queue_id)
            SELECT message_id, p_host, p_queue_ids[i] FROM outbox WHERE message_id = p_messages[i]
            FOR KEY SHARE
            ON CONFLICT DO NOTHING;
        END IF;
    END LOOP;
END
$$;
