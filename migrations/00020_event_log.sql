-- +goose Up
-- The change feed (issue 15): published events, kept EVENT_RETENTION. The relay moves
-- each outbox row here once the broker confirmed it (one statement: DELETE …
-- RETURNING into INSERT), so the write path inserts nothing more than before.
-- outbox_id keeps the order of the events of one change (which share a sequence).
CREATE TABLE event_log (
    user_id     uuid        NOT NULL,
    sequence    bigint      NOT NULL,
    outbox_id   bigint      NOT NULL,
    event_id    uuid        NOT NULL,
    routing_key text        NOT NULL,
    payload     bytea       NOT NULL,
    created_at  timestamptz NOT NULL,
    -- The global feed's position: assigned by the relay leader as it moves rows, one
    -- statement after another, so positions grow in the order the moves commit.
    position    bigint      NOT NULL,
    PRIMARY KEY (user_id, sequence, outbox_id)
);
CREATE INDEX event_log_created_at_idx ON event_log (created_at);
CREATE UNIQUE INDEX event_log_position_key ON event_log (position);

-- +goose Down
DROP TABLE event_log;
