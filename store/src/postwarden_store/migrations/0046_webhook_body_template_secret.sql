-- An api_call's body template may hold a credential (PagerDuty's routing_key, a token
-- in a field), so the admin service stores it encrypted in body_template_ciphertext,
-- as it does the headers, and never shows it. The key is the service's, so this
-- migration cannot encrypt: rows from before keep their plain body_template, read as
-- they are, until the admin service seals them when it starts.
ALTER TABLE webhook_endpoints
    ADD COLUMN body_template_ciphertext text,
    -- at most one of the two: plain (not yet sealed) or encrypted
    ADD CONSTRAINT webhook_endpoints_body_template_once
        CHECK (body_template IS NULL OR body_template_ciphertext IS NULL);
