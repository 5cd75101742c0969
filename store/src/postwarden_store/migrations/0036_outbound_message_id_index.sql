-- GET /api/v1/messages?message_id=: a sent message found by its Message-ID header (as a
-- bounce or a recipient's report quotes it), which no index served. (The queue_id
-- filter has outbound_messages_queue_id, 0004.)
CREATE INDEX outbound_messages_message_id ON outbound_messages (message_id);
