-- Why the service disabled an endpoint itself: its receiver answered 410 Gone, saying it
-- will take no delivery again (a deleted Slack webhook). Retried as any failure, every
-- delivery spent its attempts to be dead all the same, and new events kept coming.
-- NULL while enabled, or when an operator disabled it; enabling it again clears it.
-- A nullable column without a default: no table rewrite.
ALTER TABLE webhook_endpoints ADD COLUMN disabled_reason text;
