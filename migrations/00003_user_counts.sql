-- +goose Up
-- Platform statistics (GET /api/v1/users/stats, the user gauges of /metrics) read
-- counts kept by a trigger, in the transaction of every write to users, instead of
-- counting a million rows per request. A row holds the number of users with one
-- combination of the counted columns, as a sum of deltas: the stats add the rows up.
--
-- shard is the PostgreSQL backend (pg_backend_pid) that wrote the delta, so two
-- transactions never update the same counter row: a hot shared counter would
-- serialize every registration, and two batches touching two counters in opposite
-- orders could deadlock. One backend runs one transaction at a time. Rows of ended
-- backends are folded into shard 0 by the pruner (postgres.DB.Prune).
CREATE TABLE user_counts (
    shard             integer NOT NULL,
    role              text    NOT NULL,
    status            text    NOT NULL,
    email_verified    boolean NOT NULL,
    profile_completed boolean NOT NULL,
    n                 bigint  NOT NULL,
    PRIMARY KEY (shard, role, status, email_verified, profile_completed)
);

-- +goose StatementBegin
CREATE FUNCTION user_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO user_counts AS c VALUES (pg_backend_pid(), OLD.role, OLD.status, OLD.email_verified, OLD.profile_completed, -1)
        ON CONFLICT (shard, role, status, email_verified, profile_completed) DO UPDATE SET n = c.n - 1;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO user_counts AS c VALUES (pg_backend_pid(), NEW.role, NEW.status, NEW.email_verified, NEW.profile_completed, 1)
        ON CONFLICT (shard, role, status, email_verified, profile_completed) DO UPDATE SET n = c.n + 1;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER users_count_rows AFTER INSERT OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION user_counts_apply();
-- Most writes (enrollments, preferences, logins) leave the counted columns alone:
-- the WHEN clause skips the function for them.
CREATE TRIGGER users_count_changes AFTER UPDATE ON users
    FOR EACH ROW
    WHEN (OLD.role IS DISTINCT FROM NEW.role OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.email_verified IS DISTINCT FROM NEW.email_verified
          OR OLD.profile_completed IS DISTINCT FROM NEW.profile_completed)
    EXECUTE FUNCTION user_counts_apply();

-- The users present now. CREATE TRIGGER locked out writers until this commits.
INSERT INTO user_counts
SELECT 0, role, status, email_verified, profile_completed, count(*) FROM users
GROUP BY role, status, email_verified, profile_completed;

-- +goose Down
DROP TRIGGER users_count_changes ON users;
DROP TRIGGER users_count_rows ON users;
DROP FUNCTION user_counts_apply();
DROP TABLE user_counts;
