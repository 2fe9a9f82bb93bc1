-- +goose Up
-- The admin search's updatedAt order lives beside users instead of in an index
-- of users (issue 16). Every profile write sets users.updated_at, and while
-- users_updated_at_idx existed that made every such UPDATE a non-HOT update:
-- a new tuple in all eleven indexes of users, the trigram GIN index among them
-- (13 WAL records a PUT /me; 1.7x the throughput with the index dropped, in
-- bench/results/2026-12-05-pgwrites-experiment.md). Now the UPDATE of users is
-- HOT unless an indexed column changes, and the order costs one narrow row with
-- two small indexes, kept by a trigger in the same transaction, so the order is
-- exactly users.updated_at for every committed write, whoever wrote it.
--
-- No foreign key: the trigger is the table's only writer, inserts the row with
-- its user and deletes it with its user. (A foreign key's check per inserted row
-- also ran with the plan made when users was empty during one bulk INSERT of a
-- million users, a sequential scan of users for every row.)
CREATE TABLE user_updated_order (
    user_id    uuid        PRIMARY KEY,
    changed_at timestamptz NOT NULL -- = users.updated_at
);

-- +goose StatementBegin
CREATE FUNCTION user_updated_order_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM user_updated_order WHERE user_id = OLD.id;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        UPDATE user_updated_order SET changed_at = NEW.updated_at WHERE user_id = NEW.id;
        IF FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    INSERT INTO user_updated_order (user_id, changed_at) VALUES (NEW.id, NEW.updated_at)
    ON CONFLICT (user_id) DO UPDATE SET changed_at = EXCLUDED.changed_at;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER users_updated_order_rows AFTER INSERT OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION user_updated_order_apply();
-- Writes that only advance the version (preferences, enrollments, sessions)
-- leave updated_at alone: the WHEN clause skips the function for them.
CREATE TRIGGER users_updated_order_changes AFTER UPDATE ON users
    FOR EACH ROW
    WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION user_updated_order_apply();

-- The users present now. CREATE TRIGGER locked out writers until this commits.
INSERT INTO user_updated_order (user_id, changed_at) SELECT id, updated_at FROM users;
CREATE INDEX user_updated_order_idx ON user_updated_order (changed_at, user_id);
DROP INDEX users_updated_at_idx;

-- Retention (DELETED_USER_RETENTION) looks for deleted users by updated_at; an
-- index on (id) of deleted users only names columns that a profile write does
-- not change, so it leaves those writes HOT.
CREATE INDEX users_deleted_idx ON users (id) WHERE status = 'deleted';

-- +goose Down
DROP INDEX users_deleted_idx;
CREATE INDEX users_updated_at_idx ON users (updated_at, id);
DROP TRIGGER users_updated_order_changes ON users;
DROP TRIGGER users_updated_order_rows ON users;
DROP FUNCTION user_updated_order_apply();
DROP TABLE user_updated_order;
