-- A rotated key's successor is the same sender: the messages, idempotency keys and
-- sending limits of the first key of a rotation line carry over to every key after
-- it (rotation made a stranger of the new key: an app lost sight of the messages it
-- had sent, a retry across the rotation sent twice, the day's quota began afresh).
-- owner is that first key's id, the key's own when it was rotated from none.
ALTER TABLE api_keys ADD COLUMN owner text REFERENCES api_keys (key_id);

WITH RECURSIVE line (key_id, owner) AS (
    SELECT key_id, key_id FROM api_keys k
    WHERE NOT EXISTS (SELECT 1 FROM api_keys p WHERE p.rotated_to = k.key_id)
    UNION ALL
    SELECT k.rotated_to, line.owner
    FROM line JOIN api_keys k ON k.key_id = line.key_id
    WHERE k.rotated_to IS NOT NULL
)
UPDATE api_keys a SET owner = line.owner FROM line WHERE a.key_id = line.key_id;

ALTER TABLE api_keys ALTER COLUMN owner SET NOT NULL;
