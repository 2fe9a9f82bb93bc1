-- +goose Up
-- The relay leader prunes event_log oldest position first (messaging.Relay,
-- pruneEventLog): positions follow the moves, created_at the writes, and the two
-- orders differ only by a transaction's length. The created_at index served
-- nothing else, and every event moved paid an entry in it (a WAL record, a
-- page of the index written).
DROP INDEX event_log_created_at_idx;

-- +goose Down
CREATE INDEX event_log_created_at_idx ON event_log (created_at);
