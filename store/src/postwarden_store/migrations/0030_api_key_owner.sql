-- A rotated sender key sees the messages of the keys it replaced (and they, during
-- their grace, its): rotation made a stranger of the new key, and an app lost sight
-- of what it had sent. owner is the first key of the rotation line, the key's own id
-- when it was rotated from none; messages keep the id of the key that sent them.
-- Idempotency keys and sending limits stay per key.
ALTER TABLE api_keys ADD COLUMN owner text REFERENCES api_keys (key_id);

-- Lines as rotated_to recorded them. A key rotated twice (A to B, then A to C)
-- recorded C only: B begins a line of its own here.
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
CREATE INDEX api_keys_owner ON api_keys (owner);

-- A key created without one (by an instance still running the previous version
-- during an upgrade, too) begins its own line.
CREATE FUNCTION api_keys_own_line() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.owner := coalesce(NEW.owner, NEW.key_id);
    RETURN NEW;
END
$$;
CREATE TRIGGER api_keys_own_line BEFORE INSERT ON api_keys
FOR EACH ROW EXECUTE FUNCTION api_keys_own_line();
