-- The send API: accepted messages, their recipients and delivery timeline,
-- the outbox the relay worker drains, usage counters, idempotency records
-- and the suppression list.

-- status: queued (in the outbox) -> relayed (Postfix took it, queue_id set)
-- -> delivered | partially_delivered | failed; failed also when the relay
-- refused it or every attempt was used.
CREATE TABLE outbound_messages (
    id              uuid        PRIMARY KEY,
    key_id          text        NOT NULL,
    message_id      text        NOT NULL,
    sender          text        NOT NULL,
    subject         text        NOT NULL,
    recipient_count integer     NOT NULL,
    size            integer     NOT NULL,
    tags            text[]      NOT NULL DEFAULT '{}',
    metadata        jsonb       NOT NULL DEFAULT '{}',
    status          text        NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'relayed', 'delivered', 'partially_delivered',
                                      'failed')),
    queue_id        text,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbound_messages_created ON outbound_messages (created_at DESC, id DESC);
CREATE INDEX outbound_messages_key ON outbound_messages (key_id, created_at DESC);
CREATE INDEX outbound_messages_queue_id ON outbound_messages (queue_id);
CREATE INDEX outbound_messages_tags ON outbound_messages USING gin (tags);

-- status: queued -> relayed -> delivered | deferred | bounced; failed when the
-- relay refused this recipient.
CREATE TABLE outbound_recipients (
    message_id uuid        NOT NULL REFERENCES outbound_messages (id) ON DELETE CASCADE,
    address    text        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('to', 'cc', 'bcc')),
    status     text        NOT NULL DEFAULT 'queued'
               CHECK (status IN ('queued', 'relayed', 'delivered', 'deferred', 'bounced',
                                 'failed')),
    detail     text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, address)
);
CREATE INDEX outbound_recipients_address ON outbound_recipients (address);

CREATE TABLE outbound_events (
    id         bigserial   PRIMARY KEY,
    message_id uuid        NOT NULL REFERENCES outbound_messages (id) ON DELETE CASCADE,
    time       timestamptz NOT NULL DEFAULT now(),
    recipient  text,
    event      text        NOT NULL,
    detail     text
);
CREATE INDEX outbound_events_message ON outbound_events (message_id, id);

-- What the relay worker still has to submit. A claimed row's next_attempt_at
-- moves into the future (a lease), so a crashed worker's rows come back.
CREATE TABLE outbox (
    message_id      uuid        PRIMARY KEY REFERENCES outbound_messages (id) ON DELETE CASCADE,
    envelope_from   text        NOT NULL,
    recipients      text[]      NOT NULL,
    content         bytea       NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due ON outbox (next_attempt_at);

-- Fixed windows per key per minute and per recipient per day; `subject` is
-- a key id or an HMAC of the recipient address, never the address itself.
CREATE TABLE outbound_rate_counters (
    scope        text        NOT NULL,
    subject      text        NOT NULL,
    window_start timestamptz NOT NULL,
    count        integer     NOT NULL,
    PRIMARY KEY (scope, subject, window_start)
);
CREATE INDEX outbound_rate_counters_window ON outbound_rate_counters (window_start);

CREATE TABLE outbound_daily_usage (
    key_id     text    NOT NULL,
    day        date    NOT NULL,
    messages   integer NOT NULL,
    recipients integer NOT NULL,
    PRIMARY KEY (key_id, day)
);

-- state: in_progress while the first request runs, done with its answer.
CREATE TABLE send_idempotency (
    key_id          text        NOT NULL,
    idempotency_key text        NOT NULL,
    request_sha256  bytea       NOT NULL,
    state           text        NOT NULL CHECK (state IN ('in_progress', 'done')),
    response_status integer,
    response_body   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, idempotency_key)
);
CREATE INDEX send_idempotency_created ON send_idempotency (created_at);

-- Addresses (lower case) that must not receive mail from the send API.
CREATE TABLE suppressions (
    address    text        PRIMARY KEY,
    reason     text        NOT NULL CHECK (reason IN ('hard_bounce', 'manual')),
    detail     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text
);

-- A random key for the recipient HMAC when the service has no secret_key.
CREATE TABLE send_hash_key (
    id  boolean PRIMARY KEY DEFAULT true CHECK (id),
    key bytea   NOT NULL
);

-- How far the maillog follower has read each log file.
CREATE TABLE maillog_positions (
    path     text        PRIMARY KEY,
    inode    bigint      NOT NULL,
    position bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
