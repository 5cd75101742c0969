-- The send API's search by recipient (`GET /api/v1/messages?to=`) and by sender
-- (`from=`) had no index to use: migration 0017 dropped the recipients' address index
-- as unused (the search compares lower(address), which it could not serve), and the
-- sender was never indexed. A search for an address walked every message newest first,
-- checking each one's recipients: 0.7-1.6 s at a million messages (bench/send_queries.py),
-- growing with the table, for the question an application asks most (what became of
-- our mail to this customer?). One index entry per recipient and per message is the
-- price; a message's later updates (status, queue id) change neither column.
CREATE INDEX outbound_recipients_address_key ON outbound_recipients (lower(address));
CREATE INDEX outbound_messages_sender ON outbound_messages (lower(sender), created_at DESC, id DESC);
