-- +goose Up
-- The envelope's sequence beside the payload (issue 16). The relay's move to
-- event_log needs it for event_log's key, and read it by parsing each payload as
-- jsonb: about a third of the move's cost per event. Rows written before this
-- column (NULL) still fall back to the payload. No default and nullable: adding
-- the column rewrites nothing.
ALTER TABLE outbox ADD COLUMN sequence bigint;

-- +goose Down
ALTER TABLE outbox DROP COLUMN sequence;
