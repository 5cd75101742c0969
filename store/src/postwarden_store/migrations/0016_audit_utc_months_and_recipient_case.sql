-- Audit partitions are UTC months whatever the session's TimeZone, and the
-- recipient search ignores case through an index.
--
-- 0001's functions added interval '1 month' to a timestamptz, which PostgreSQL
-- does in the session's time zone: under America/New_York the May partition
-- ended on May 31 00:00 UTC (so no row of May 31 could be written), under
-- Europe/Berlin October ran an hour into November (so November could not be
-- created), and retention could drop a partition still holding rows newer than
-- its cutoff. The month arithmetic is now done on `timestamp` values holding
-- UTC wall-clock time, which no time zone touches, and both functions also run
-- with TimeZone UTC. Monthly partitions made wrong by the old functions are
-- given their UTC month below.

SET LOCAL timezone = 'UTC';
SET LOCAL datestyle = 'ISO, YMD';

-- The text of `month` (UTC wall-clock time) as a timestamptz literal that reads
-- the same under every TimeZone and DateStyle.
CREATE FUNCTION audit_utc_literal(month timestamp) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN to_char(month, 'YYYY-MM-DD HH24:MI:SS') || '+00';

-- Create the monthly partition that holds `ts` if it is missing.
-- Called by writers before a batch; safe under concurrency (duplicate_table).
CREATE OR REPLACE FUNCTION audit_ensure_partition(ts timestamptz) RETURNS text
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    month_start timestamp := date_trunc('month', ts AT TIME ZONE 'UTC');
    name text := 'audit_events_' || to_char(month_start, 'YYYYMM');
BEGIN
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
-- name says (a hand-made partition may have other bounds).
CREATE OR REPLACE FUNCTION audit_drop_partitions_before(cutoff timestamptz) RETURNS SETOF text
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    part record;
    newer boolean;
BEGIN
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

-- Give every monthly partition its UTC month. The old functions got the lower
-- bound right and only the upper one wrong: too early leaves a gap no row could
-- be written into; too late holds the first rows of the next month, whose own
-- partition therefore could not exist. Those rows move to a new partition of
-- their month, filled before it is attached so the webhook trigger does not
-- raise their events a second time.
DO $$
DECLARE
    parts text[];
    exprs text[];
    bound text[];
    wrong text[] := '{}';
    name text;
    month_start timestamp;
    moved integer;
BEGIN
    SELECT array_agg(c.relname ORDER BY c.relname),
           array_agg(pg_get_expr(c.relpartbound, c.oid) ORDER BY c.relname)
    INTO parts, exprs
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'audit_events'::regclass
      AND c.relname ~ '^audit_events_\d{6}$';
    FOR n IN 1 .. coalesce(cardinality(parts), 0) LOOP
        month_start := make_timestamp(substr(right(parts[n], 6), 1, 4)::int,
                                      substr(right(parts[n], 6), 5, 2)::int, 1, 0, 0, 0);
        bound := regexp_match(exprs[n], '^FOR VALUES FROM \(''([^'']*)''\) TO \(''([^'']*)''\)$');
        IF bound IS NULL
           OR bound[1]::timestamptz <> month_start AT TIME ZONE 'UTC'
           OR bound[2]::timestamptz <> (month_start + interval '1 month') AT TIME ZONE 'UTC' THEN
            RAISE NOTICE 'audit partition % has bounds % instead of its UTC month',
                parts[n], exprs[n];
            EXECUTE format('ALTER TABLE audit_events DETACH PARTITION %I', parts[n]);
            wrong := wrong || parts[n];
        END IF;
    END LOOP;
    IF cardinality(wrong) = 0 THEN
        RETURN;
    END IF;

    CREATE TEMPORARY TABLE audit_events_misplaced (LIKE audit_events) ON COMMIT DROP;
    FOREACH name IN ARRAY wrong LOOP
        month_start := make_timestamp(substr(right(name, 6), 1, 4)::int,
                                      substr(right(name, 6), 5, 2)::int, 1, 0, 0, 0);
        EXECUTE format(
            'WITH moved AS (DELETE FROM %I WHERE time < %L OR time >= %L RETURNING *) '
            'INSERT INTO audit_events_misplaced SELECT * FROM moved',
            name, audit_utc_literal(month_start),
            audit_utc_literal(month_start + interval '1 month'));
        GET DIAGNOSTICS moved = ROW_COUNT;
        IF moved > 0 THEN
            RAISE NOTICE 'audit partition %: % rows belong to another month', name, moved;
        END IF;
        EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       name, audit_utc_literal(month_start),
                       audit_utc_literal(month_start + interval '1 month'));
    END LOOP;

    FOR month_start IN
        SELECT DISTINCT date_trunc('month', time AT TIME ZONE 'UTC') FROM audit_events_misplaced
    LOOP
        name := 'audit_events_' || to_char(month_start, 'YYYYMM');
        IF to_regclass(name) IS NOT NULL THEN
            RAISE EXCEPTION 'audit rows of % were stored in another month''s partition, '
                            'and % exists already', to_char(month_start, 'YYYY-MM'), name
                USING HINT = 'Move those rows by hand, then apply the migrations again.';
        END IF;
        EXECUTE format('CREATE TABLE %I (LIKE audit_events INCLUDING DEFAULTS)', name);
        EXECUTE format('INSERT INTO %I SELECT * FROM audit_events_misplaced '
                       'WHERE time >= %L AND time < %L', name, audit_utc_literal(month_start),
                       audit_utc_literal(month_start + interval '1 month'));
        EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       name, audit_utc_literal(month_start),
                       audit_utc_literal(month_start + interval '1 month'));
    END LOOP;
END;
$$;

-- The recipient filter compares lower-cased addresses; the stored recipients
-- stay as the milter saw them. Evaluated row by row the function costs some
-- thirty times the plain @> (about 5 us a row): its high COST keeps the planner
-- on the index for "newest first, LIMIT n" searches, where it would otherwise
-- walk the primary key backwards calling it on every row it passes.
CREATE FUNCTION audit_lower(addresses text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE COST 1000
RETURN ARRAY(SELECT lower(address) FROM unnest(addresses) AS address);

CREATE INDEX audit_events_recipients_lower ON audit_events USING gin (audit_lower(recipients));
-- Nothing searches the recipients as given any more.
DROP INDEX audit_events_recipients;
