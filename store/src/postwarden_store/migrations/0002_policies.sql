-- Policy revisions: immutable YAML documents, and which revision of each
-- policy is active. Activation sends NOTIFY postwarden_policy so every milter
-- reloads its policy set from the active revisions.

CREATE TABLE policy_revisions (
    id            bigserial   PRIMARY KEY,
    policy_name   text        NOT NULL,
    content_hash  text        NOT NULL,
    source        text        NOT NULL,
    author_key_id text,
    comment       text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX policy_revisions_name ON policy_revisions (policy_name, id DESC);

CREATE TABLE active_policies (
    policy_name  text        PRIMARY KEY,
    revision_id  bigint      NOT NULL REFERENCES policy_revisions (id),
    activated_at timestamptz NOT NULL DEFAULT now(),
    activated_by text
);
