-- The send API's search by tag (`GET /api/v1/messages?tag=`) had no index (0017 dropped
-- the GIN one, which `$tag = ANY(tags)` could not use): a tag few messages carry, or
-- none, walked every message newest first (200,000 rows read for one page, growing with
-- the table). The filter now reads `tags @> ARRAY[$tag]`, which this index serves, and
-- the search plans each tag search for its own tag (postwarden_admin_api.send.queries).
-- Only tagged messages are indexed: a send without tags writes no entry, as since 0017.
CREATE INDEX outbound_messages_tags ON outbound_messages USING gin (tags)
    WHERE tags <> '{}';
