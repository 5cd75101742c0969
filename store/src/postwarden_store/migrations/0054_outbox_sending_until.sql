-- A relay claim made in another PID namespace (a restarted container) or on another
-- host waited out its whole lease (15 minutes) after its service was killed: only
-- /proc could tell its process gone, and only on the same host and namespace.
--   outbox.sending_until: set, on the connection that holds the claimant's token
--     (a session advisory lock), just before the row is submitted: until then a
--     submit of it may be under way. A claim whose token no session holds any more is
--     dead: its rows are made due at once, but for one still within sending_until.
--     NULL: not being submitted (cleared by the next claim).
-- A nullable column without a default: no table rewrite.
ALTER TABLE outbox ADD COLUMN sending_until timestamptz;
