-- +goose Up
-- Erasure requests (issue 14): one row per user, an idempotent state machine
-- requested -> done | cancelled (a cancelled one may be requested again). The
-- erase itself commits state 'done' in the transaction that scrubs the user,
-- fenced on state 'requested', so it happens once; cleaned_at records that the
-- Redis copies were removed afterwards (retried until then).
CREATE TABLE erasures (
    user_id         uuid PRIMARY KEY,
    state           text        NOT NULL CHECK (state IN ('requested', 'cancelled', 'done')),
    requested_at    timestamptz NOT NULL,
    scheduled_at    timestamptz NOT NULL,
    requested_by    uuid,
    previous_status text        NOT NULL,
    cancelled_at    timestamptz,
    cancelled_by    uuid,
    done_at         timestamptz,
    cleaned_at      timestamptz
);
CREATE INDEX erasures_due_idx ON erasures (scheduled_at) WHERE state = 'requested';
CREATE INDEX erasures_uncleaned_idx ON erasures (done_at) WHERE state = 'done' AND cleaned_at IS NULL;

-- +goose Down
DROP TABLE erasures;
