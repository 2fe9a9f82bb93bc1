-- +goose Up
-- The relay deletes an outbox row once the broker confirmed it (messaging.Relay,
-- moveToEventLogSQL); no relay of this version stamps published_at. So every row
-- is pending, and the partial index of pending ids held the same entries as the
-- primary key: one more index entry to write for every event and to clean up
-- after it (issue 16). The relay's reads of pending rows (ORDER BY id, max(id),
-- id <= n) walk the primary key instead and skip, by a filter, the rows an older
-- relay stamped, until its prune deletes them. outbox_published_idx stays for
-- that prune; a pending row has no entry in it.
DROP INDEX outbox_pending_idx;

-- +goose Down
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE published_at IS NULL;
