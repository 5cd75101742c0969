-- A delivery deleted (pruned, or with its endpoint) sets its replays' replay_of to NULL
-- (0005_webhooks.sql: ON DELETE SET NULL), and without an index on replay_of each row
-- deleted read the whole table to find them: pruning 100,000 deliveries past
-- webhook_history_days took 8 minutes (measured), and deleting an endpoint with such
-- a history holds its row as long, while webhook_raise waits for it (0019). Only
-- replays have a replay_of, so the index holds only them.
CREATE INDEX webhook_deliveries_replay_of ON webhook_deliveries (replay_of)
    WHERE replay_of IS NOT NULL;
