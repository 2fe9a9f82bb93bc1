-- +goose Up
-- Bulk jobs (issue 15). A job row is the state machine (queued → running → done,
-- or cancelled/failed); each item is a row whose result (status, error) is written
-- in the same transaction as the user change it made, and only while it has none
-- (the writer's fence), so an item is applied at most once across crashes and
-- leader changes. counts are kept by the worker (recomputed from the items when a
-- job resumes and when it ends).
CREATE TABLE jobs (
    id              uuid        PRIMARY KEY,
    type            text        NOT NULL,
    state           text        NOT NULL,
    params          jsonb       NOT NULL DEFAULT '{}',
    created_by      uuid,
    correlation_id  text        NOT NULL DEFAULT '',
    total           integer     NOT NULL DEFAULT 0,
    processed       integer     NOT NULL DEFAULT 0,
    succeeded       integer     NOT NULL DEFAULT 0,
    failed          integer     NOT NULL DEFAULT 0,
    error           text,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL
);
-- The worker picks the oldest unfinished job.
CREATE INDEX jobs_unfinished_idx ON jobs (created_at) WHERE state IN ('queued', 'running');

CREATE TABLE job_items (
    job_id   uuid    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    item     bigint  NOT NULL, -- 1-based, in upload order
    user_id  uuid,             -- the target, or the imported user once known
    payload  bytea,            -- import: the row as a CreateUser JSON object
    status   smallint,         -- NULL while pending
    error    text,
    done_at  timestamptz,
    PRIMARY KEY (job_id, item)
);
-- Pending items of a job, in order: what the worker reads next.
CREATE INDEX job_items_pending_idx ON job_items (job_id, item) WHERE status IS NULL;

-- +goose Down
DROP TABLE job_items;
DROP TABLE jobs;
