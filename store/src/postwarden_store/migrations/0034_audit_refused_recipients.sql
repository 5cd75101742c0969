-- The audit search's recipient filter found a transaction only by the recipients the
-- milter accepted: one it refused at RCPT (a `recipient_refused` entry of `changes`)
-- was not found, so asking what became of mail to an address missed the very mail
-- that address never got. The filter now matches those too: audit_refused() lists
-- them, lower-cased as audit_lower() does (0016), and a GIN index serves it. The index
-- is partial: most events refuse no recipient, and the predicate keeps them out of it
-- (and spares their inserts the function).
-- Any `changes` at all: a lossy bitmap page rechecks it before the index's predicate.
CREATE FUNCTION audit_refused(changes jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE COST 1000
RETURN CASE WHEN jsonb_typeof(changes) = 'array' THEN ARRAY(
    SELECT lower(change ->> 'recipient') FROM jsonb_array_elements(changes) AS change
    WHERE change ->> 'kind' = 'recipient_refused' AND change ->> 'recipient' IS NOT NULL)
    ELSE '{}' END;

CREATE INDEX audit_events_refused ON audit_events USING gin (audit_refused(changes))
    WHERE changes @> '[{"kind": "recipient_refused"}]';
