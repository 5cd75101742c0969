-- A message the log settled as failed or partially_delivered kept last_error
-- NULL (the relay clears it when Postfix queues the message), though the API
-- promises it says why. It now takes the detail of the recipient that failed
-- last: the newest bounced or failed event of a recipient still bounced or failed
-- (one probe down the events index, newest first); a recipient the relay refused
-- before its events were written has none, and then the first such recipient's
-- detail is taken. Details are already redacted as the relay's replies are
-- (scrub_reply, by the follower and the relay). A message settling as delivered
-- (an alias member delivered after another's bounce) drops it.
-- Restated from 0017_send_cpu.sql with only last_error added.
CREATE OR REPLACE FUNCTION maillog_settle(p_message uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbound_messages m
    SET status = s.status,
        last_error = CASE WHEN s.status = 'delivered' THEN NULL ELSE coalesce(
            (SELECT r.detail FROM outbound_events e
             JOIN outbound_recipients r
               ON r.message_id = e.message_id AND lower(r.address) = lower(e.recipient)
             WHERE e.message_id = p_message AND e.event IN ('bounced', 'failed')
               AND r.status IN ('bounced', 'failed') AND r.detail IS NOT NULL
             ORDER BY e.message_id DESC, e.id DESC LIMIT 1),
            (SELECT r.detail FROM outbound_recipients r
             WHERE r.message_id = p_message AND r.status IN ('bounced', 'failed')
               AND r.detail IS NOT NULL
             ORDER BY r.address LIMIT 1)) END,
        updated_at = now()
    FROM (
        SELECT CASE
            WHEN bool_and(status = 'delivered') THEN 'delivered'
            WHEN bool_and(status IN ('bounced', 'failed')) THEN 'failed'
            ELSE 'partially_delivered' END AS status
        FROM outbound_recipients WHERE message_id = p_message
        HAVING bool_and(status IN ('delivered', 'bounced', 'failed'))
    ) s
    WHERE m.id = p_message AND m.status <> s.status;
END
$$;
