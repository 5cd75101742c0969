-- The audit log: one row per SMTP transaction seen by a milter.
-- Partitioned by month so retention drops whole partitions; the primary key
-- includes the partition key, and (time, event_id) is fixed per event, so a
-- replayed event conflicts with its first copy and is skipped.

CREATE TABLE audit_events (
    event_id       uuid             NOT NULL,
    time           timestamptz      NOT NULL,
    instance       text             NOT NULL,
    queue_id       text,
    message_uid    text             NOT NULL,
    client_address inet,
    client_name    text,
    helo           text,
    auth_user      text,
    sender         text             NOT NULL,
    recipients     text[]           NOT NULL,
    header_from    text,
    message_id     text,
    subject        text,
    size           bigint           NOT NULL,
    action         text             NOT NULL,
    smtp_reply     text,
    rules          text[]           NOT NULL,
    changes        jsonb            NOT NULL,
    policy_hash    text             NOT NULL,
    duration_ms    double precision NOT NULL,
    flags          text[]           NOT NULL DEFAULT '{}',
    notify         text[]           NOT NULL DEFAULT '{}',
    PRIMARY KEY (time, event_id)
) PARTITION BY RANGE (time);

CREATE INDEX audit_events_queue_id ON audit_events (queue_id);
CREATE INDEX audit_events_sender ON audit_events (lower(sender), time DESC);
CREATE INDEX audit_events_message_id ON audit_events (message_id);
CREATE INDEX audit_events_action ON audit_events (action, time DESC);
CREATE INDEX audit_events_client ON audit_events (client_address, time DESC);
CREATE INDEX audit_events_recipients ON audit_events USING gin (recipients);
CREATE INDEX audit_events_rules ON audit_events USING gin (rules);

-- Create the monthly partition that holds `ts` if it is missing.
-- Called by writers before a batch; safe under concurrency (duplicate_table).
CREATE FUNCTION audit_ensure_partition(ts timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamptz := date_trunc('month', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    name text := 'audit_events_' || to_char(month_start AT TIME ZONE 'UTC', 'YYYYMM');
BEGIN
    IF to_regclass(name) IS NULL THEN
        BEGIN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
                name, month_start, month_start + interval '1 month');
        EXCEPTION WHEN duplicate_table THEN
            NULL;
        END;
    END IF;
    RETURN name;
END;
$$;

-- Drop the monthly partitions that end before `cutoff`; returns their names.
CREATE FUNCTION audit_drop_partitions_before(cutoff timestamptz) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.relname,
               make_timestamptz(substr(right(c.relname, 6), 1, 4)::int,
                                substr(right(c.relname, 6), 5, 2)::int, 1, 0, 0, 0, 'UTC')
                   AS month_start
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'audit_events'::regclass
          AND c.relname ~ '^audit_events_\d{6}$'
    LOOP
        IF part.month_start + interval '1 month' <= cutoff THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            RETURN NEXT part.relname;
        END IF;
    END LOOP;
END;
$$;

SELECT audit_ensure_partition(now());
