-- The admin service: API keys, the append-only admin audit log, runtime
-- settings and shared rate-limit counters.

-- Only the key id and the SHA-256 of the secret part are stored; the full key
-- (pw_<key_id>_<secret>) is shown once when it is created.
CREATE TABLE api_keys (
    key_id          text        PRIMARY KEY,
    secret_sha256   bytea       NOT NULL,
    name            text        NOT NULL,
    role            text        NOT NULL CHECK (role IN ('admin', 'operator', 'auditor', 'sender')),
    allowed_senders text[]      NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text,
    expires_at      timestamptz,
    revoked_at      timestamptz,
    rotated_to      text        REFERENCES api_keys (key_id),
    last_used_at    timestamptz
);

-- Every admin action, written once and never changed.
CREATE TABLE admin_audit (
    id             bigserial   PRIMARY KEY,
    time           timestamptz NOT NULL DEFAULT now(),
    key_id         text,
    key_name       text,
    client_address inet,
    action         text        NOT NULL,
    target         text,
    summary        jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX admin_audit_time ON admin_audit (time DESC, id DESC);

CREATE FUNCTION admin_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_audit is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER admin_audit_no_update BEFORE UPDATE OR DELETE ON admin_audit
    FOR EACH ROW EXECUTE FUNCTION admin_audit_append_only();
CREATE TRIGGER admin_audit_no_truncate BEFORE TRUNCATE ON admin_audit
    FOR EACH STATEMENT EXECUTE FUNCTION admin_audit_append_only();

-- Settings changed at run time through the API. Secret settings hold only a
-- ciphertext ("v1:<key id>:<base64 nonce+ciphertext>"); columns whose names
-- end in _ciphertext are re-encrypted by `postwarden-admin secrets rotate`.
CREATE TABLE runtime_settings (
    name             text        PRIMARY KEY,
    value            jsonb,
    value_ciphertext text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    updated_by       text,
    CHECK ((value IS NULL) <> (value_ciphertext IS NULL))
);

-- Fixed-window counters shared by every service instance.
CREATE TABLE rate_limit_counters (
    bucket       text        NOT NULL,
    window_start timestamptz NOT NULL,
    count        integer     NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
CREATE INDEX rate_limit_counters_window ON rate_limit_counters (window_start);
