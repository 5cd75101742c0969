-- When a delivery's request started: set by the worker as it reads the endpoint's
-- settings to send it with (holding the endpoint's row), cleared when the outcome is
-- recorded. A change of the endpoint waits for the requests started before it, so none
-- goes out with an old secret, or to an old URL, once the change is answered.
-- A nullable column without a default: no table rewrite. The index holds only the
-- requests under way: a few rows.
ALTER TABLE webhook_deliveries ADD COLUMN sending_since timestamptz;
CREATE INDEX webhook_deliveries_sending
    ON webhook_deliveries (endpoint_id) WHERE sending_since IS NOT NULL;
