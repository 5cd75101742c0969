-- One audit event is read by its id (GET /api/v1/audit/{event_id}), but the
-- only index holding event_id was the primary key (time, event_id), which
-- cannot be searched by its second column: the lookup read every partition
-- whole, slower the longer the log. An index on event_id made on the
-- partitioned table is made on every partition, and on each one created later.
-- Building it takes a SHARE lock on each partition, so audit writes wait until
-- this migration commits (CONCURRENTLY is refused on a partitioned table).
CREATE INDEX audit_events_event_id ON audit_events (event_id);
