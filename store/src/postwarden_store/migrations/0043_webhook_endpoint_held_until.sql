-- A receiver's Retry-After (a 429 of its rate limit, a 503 of a maintenance) speaks for
-- the receiver, not for one delivery: until `held_until` the worker claims none of the
-- endpoint's deliveries, those raised meanwhile included. Without it the endpoint's
-- backlog went out at once all the same, each delivery spending an attempt on a 429.
-- A nullable column without a default: no table rewrite.
ALTER TABLE webhook_endpoints ADD COLUMN held_until timestamptz;
