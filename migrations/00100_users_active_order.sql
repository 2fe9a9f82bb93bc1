-- +goose Up
-- The admin search's lastActiveAt order lives beside users instead of in an
-- index of users, as the updatedAt order does since 00070 (issue 16). Reads
-- record activity (at most once a minute per user, TOUCH flushes every second),
-- and while users_last_active_at_idx existed each of those writes, and every
-- login, was a non-HOT update of users: a new tuple in every index of users, the
-- trigram GIN index among them. Under the mix at 1,000 req/s the GIN index's
-- pending list grew to 380 pages (4,200 entries) that every admin search scanned
-- until autovacuum merged it: the search's count took 6-8 ms in PostgreSQL
-- against 0.6 ms with the list empty. Now such an UPDATE is HOT unless another
-- indexed column changes, and the order costs one narrow row with two small
-- indexes, kept by a trigger in the same transaction, so the order is exactly
-- users.last_active_at for every committed write, whoever wrote it.
--
-- Every user has a row, those never active with active_at NULL: the index then
-- serves both halves of a lastActiveAt page (the active users in order, then
-- the never active by id) as users_last_active_at_idx did. No foreign key, as
-- for user_updated_order: the trigger is the table's only writer.
CREATE TABLE user_active_order (
    user_id   uuid PRIMARY KEY,
    active_at timestamptz -- = users.last_active_at
);

-- +goose StatementBegin
CREATE FUNCTION user_active_order_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM user_active_order WHERE user_id = OLD.id;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        UPDATE user_active_order SET active_at = NEW.last_active_at WHERE user_id = NEW.id;
        IF FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    INSERT INTO user_active_order (user_id, active_at) VALUES (NEW.id, NEW.last_active_at)
    ON CONFLICT (user_id) DO UPDATE SET active_at = EXCLUDED.active_at;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER users_active_order_rows AFTER INSERT OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION user_active_order_apply();
-- Only writes that move last_active_at run the function.
CREATE TRIGGER users_active_order_changes AFTER UPDATE ON users
    FOR EACH ROW
    WHEN (OLD.last_active_at IS DISTINCT FROM NEW.last_active_at)
    EXECUTE FUNCTION user_active_order_apply();

-- The users present now. CREATE TRIGGER locked out writers until this commits.
INSERT INTO user_active_order (user_id, active_at) SELECT id, last_active_at FROM users;
CREATE INDEX user_active_order_idx ON user_active_order (active_at, user_id);
DROP INDEX users_last_active_at_idx;

-- +goose Down
CREATE INDEX users_last_active_at_idx ON users (last_active_at, id);
DROP TRIGGER users_active_order_changes ON users;
DROP TRIGGER users_active_order_rows ON users;
DROP FUNCTION user_active_order_apply();
DROP TABLE user_active_order;
