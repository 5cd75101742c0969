-- Three audit search filters an administrator reaches for: `auth_user` (the SASL
-- login: what did an account whose password leaked send?), `header_from` (the From
-- header's address: who was impersonated to whom?) and `flag` (what the parser and the
-- verdict noted: every message with an ambiguous file name). Each has an index, as the
-- other filters do, so a search stops at its page's end. The login's is partial: most
-- mail comes with no login, and the rows without one need no entry. The From address's
-- is not: the planner has no statistics for a partial index's expression, and guessing
-- for an IDN address's forms (`= ANY`) it walked the whole log newest first instead.
CREATE INDEX audit_events_auth_user ON audit_events (lower(auth_user), time DESC)
    WHERE auth_user IS NOT NULL;
CREATE INDEX audit_events_header_from ON audit_events (lower(header_from), time DESC);
CREATE INDEX audit_events_flags ON audit_events USING gin (flags);
