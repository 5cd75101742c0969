-- A replay sends a stored event to the endpoint's URL as it is now. An operator
-- (who may not read the audit log) could point an endpoint elsewhere and replay
-- its past deliveries there, so a replay now goes only to the URL the delivery
-- was made for: url_set_at records when the URL was last set, and a delivery
-- created before that is not replayed (the admin service compares it with the
-- delivery's created_at). Endpoints from before: their last update may have set
-- the URL, so it stands for the time their URL was set.
ALTER TABLE webhook_endpoints ADD COLUMN url_set_at timestamptz;
UPDATE webhook_endpoints SET url_set_at = updated_at;
ALTER TABLE webhook_endpoints
    ALTER COLUMN url_set_at SET NOT NULL,
    ALTER COLUMN url_set_at SET DEFAULT now();
