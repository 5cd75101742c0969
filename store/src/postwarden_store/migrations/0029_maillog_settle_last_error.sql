-- A message the log settled as failed or partially_delivered kept last_error
-- NULL (the relay clears it when Postfix queues the message), though the API
-- promises it says why. It now takes the detail of the recipient that failed
-- last: of those bounced or failed, the one whose such timeline event came
-- last (a recipient the relay refused before the change has none: it comes
-- after those that have one). Details are already redacted as the relay's
-- replies are (scrub_reply, by the follower and the relay). A reason once set
-- stays when the status changes again between failed and partially_delivered;
-- a message settling as delivered (an alias member delivered after another's
-- bounce) drops it, as nothing else writes last_error once Postfix queued it.
-- Restated from 0017_send_cpu.sql with only last_error added.
CREATE OR REPLACE FUNCTION maillog_settle(p_message uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbound_messages m
    SET status = s.status,
        last_error = CASE
            WHEN s.status = 'delivered' THEN NULL
            WHEN m.last_error IS NOT NULL THEN m.last_error
            ELSE (SELECT r.detail FROM outbound_recipients r
                  WHERE r.message_id = p_message AND r.status IN ('bounced', 'failed')
                    AND r.detail IS NOT NULL
                  ORDER BY (SELECT max(e.id) FROM outbound_events e
                            WHERE e.message_id = p_message
                              AND e.event IN ('bounced', 'failed')
                              AND lower(e.recipient) = lower(r.address)) DESC NULLS LAST,
                           r.address
                  LIMIT 1) END,
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
