-- A message Postfix took with a 250 that names no queue id (a before-queue content
-- filter, smtpd_proxy_filter, answers with its own reply) stayed `relayed` with no
-- queue id for good: no line of Postfix's log can be tied to it, so a client polling
-- until the status is final polled for ever. Such a message is now `untracked`, a
-- final status: Postfix took it, and what became of it is not known here.
--
-- NOT VALID: every row passed the narrower check it replaces, and a validation would
-- read the whole table while it is locked. New rows are checked all the same.
ALTER TABLE outbound_messages DROP CONSTRAINT outbound_messages_status_check,
    ADD CONSTRAINT outbound_messages_status_check
        CHECK (status IN ('queued', 'relayed', 'untracked', 'delivered', 'partially_delivered',
                          'failed')) NOT VALID;
