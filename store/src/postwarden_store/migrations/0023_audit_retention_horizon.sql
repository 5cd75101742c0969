-- Retention's drops stay dropped. A milter replaying its spool after an outage
-- wrote events of a month retention had dropped, and audit_ensure_partition
-- created that month again (the data back, until the next round). Retention now
-- records the first month it keeps (`kept_from`, the UTC month of its cutoff:
-- every month before it is dropped), and audit_ensure_partition makes no
-- partition for a month before it and answers NULL: the writer then leaves that
-- month's events out and counts them as expired (a milter not yet upgraded
-- finds no partition for them, and drops them as refused).
--
-- audit_ensure_partition reads kept_from with FOR SHARE, which the writer's
-- transaction holds until it commits, and retention updates it before it drops
-- anything: a batch that read the old value commits before retention can drop
-- a month, and one that comes later reads the new value. Retention first locks
-- the table in EXCLUSIVE mode, which conflicts with the ROW SHARE lock FOR SHARE
-- takes on it: table locks are granted in turn, so batches that start after
-- retention cannot pass it (waiting for the row lock alone, retention could
-- wait for ever while overlapping batches hold it in turns). Plain reads of the
-- table (ACCESS SHARE) and autovacuum are held back by neither.

SET LOCAL timezone = 'UTC';

CREATE TABLE audit_retention (
    one       boolean     PRIMARY KEY DEFAULT true CHECK (one),
    kept_from timestamptz  -- NULL until retention's first round
);
INSERT INTO audit_retention DEFAULT VALUES;

CREATE OR REPLACE FUNCTION audit_ensure_partition(ts timestamptz) RETURNS text
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    month_start timestamp := date_trunc('month', ts AT TIME ZONE 'UTC');
    name text := 'audit_events_' || to_char(month_start, 'YYYYMM');
BEGIN
    IF month_start AT TIME ZONE 'UTC' < (SELECT kept_from FROM audit_retention FOR SHARE) THEN
        RETURN NULL;  -- a month retention dropped
    END IF;
    IF to_regclass(name) IS NULL THEN
        BEGIN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
                name, audit_utc_literal(month_start),
                audit_utc_literal(month_start + interval '1 month'));
        EXCEPTION WHEN duplicate_table THEN
            NULL;
        END;
    END IF;
    RETURN name;
END;
$$;

-- Drop the monthly partitions that end before `cutoff`; returns their names.
-- A partition still holding a row at or after the cutoff is kept whatever its
-- name says (a hand-made partition may have other bounds). First moves
-- kept_from forward to the cutoff's UTC month (never back: a longer retention
-- brings no dropped month back either; greatest() passes over NULL).
CREATE OR REPLACE FUNCTION audit_drop_partitions_before(cutoff timestamptz) RETURNS SETOF text
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    part record;
    newer boolean;
BEGIN
    LOCK TABLE audit_retention IN EXCLUSIVE MODE;
    UPDATE audit_retention
    SET kept_from = greatest(kept_from, date_trunc('month', cutoff AT TIME ZONE 'UTC')
                                        AT TIME ZONE 'UTC');
    FOR part IN
        SELECT c.relname,
               make_timestamp(substr(right(c.relname, 6), 1, 4)::int,
                              substr(right(c.relname, 6), 5, 2)::int, 1, 0, 0, 0)
                   AS month_start
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'audit_events'::regclass
          AND c.relname ~ '^audit_events_\d{6}$'
    LOOP
        CONTINUE WHEN (part.month_start + interval '1 month') AT TIME ZONE 'UTC' > cutoff;
        EXECUTE format('SELECT EXISTS (SELECT FROM %I WHERE time >= $1)', part.relname)
            INTO newer USING cutoff;
        CONTINUE WHEN newer;
        EXECUTE format('DROP TABLE %I', part.relname);
        RETURN NEXT part.relname;
    END LOOP;
END;
$$;
