-- The From address of rows the milter wrote before it stored a dotted capital I (U+0130)
-- as i: Python's str.lower() had made it i and a combining dot above (U+0307), which
-- PostgreSQL's lower() keeps, so the search by `i` (ilker@ for İLKER@) missed those
-- rows while it found every later one. They get the form the milter writes now, which
-- makes every i and combining dot above an i (events._header_from). Rows are only ever
-- inserted, so no webhook fires again (the trigger is AFTER INSERT); the scan reads the
-- log once and rewrites only the rows that hold the pair.
UPDATE audit_events SET header_from = replace(header_from, U&'i\0307', 'i')
WHERE strpos(header_from, U&'i\0307') > 0;
