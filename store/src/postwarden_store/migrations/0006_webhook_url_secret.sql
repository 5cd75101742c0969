-- Webhook endpoint URLs are secrets: a Slack incoming-webhook path or a
-- token=/key=/sig= query parameter is a credential. The admin service stores
-- the URL encrypted in url_ciphertext (the key is the service's, so this
-- migration cannot encrypt) and keeps only its scheme and host in url_origin,
-- for display and logs. Rows from before keep their plain url until the
-- admin service seals them when it starts.
ALTER TABLE webhook_endpoints
    ALTER COLUMN url DROP NOT NULL,
    ADD COLUMN url_ciphertext text,
    ADD COLUMN url_origin text;

UPDATE webhook_endpoints
SET url_origin = coalesce(substring(url FROM '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*'), '');

ALTER TABLE webhook_endpoints
    ALTER COLUMN url_origin SET NOT NULL,
    -- exactly one of the two: plain (not yet sealed) or encrypted
    ADD CONSTRAINT webhook_endpoints_url_once CHECK ((url IS NULL) <> (url_ciphertext IS NULL));

-- History pruning deletes old events that no delivery refers to any more.
CREATE INDEX webhook_events_created ON webhook_events (created_at);
