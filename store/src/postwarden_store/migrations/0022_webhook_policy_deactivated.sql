-- Deactivating a policy (the admin service deletes its active_policies row: by
-- hand, or `policy push --prune` through the deploy route) raised no webhook
-- event, though its activation raises policy.activated (0005_webhooks.sql). It
-- now raises policy.deactivated in the same transaction, with the revision
-- that was active. Who deactivated it is in the admin audit log.
CREATE FUNCTION webhook_policy_deactivated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhook_wanted('policy.deactivated') THEN
        RETURN NULL;
    END IF;
    PERFORM webhook_raise('policy.deactivated', jsonb_build_object(
        'policy_name', OLD.policy_name, 'revision_id', OLD.revision_id,
        'content_hash', (SELECT content_hash FROM policy_revisions WHERE id = OLD.revision_id),
        'time', now()));
    RETURN NULL;
END;
$$;
CREATE TRIGGER active_policies_deactivated_webhooks AFTER DELETE ON active_policies
    FOR EACH ROW EXECUTE FUNCTION webhook_policy_deactivated();
