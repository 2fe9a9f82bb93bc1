-- +goose Up
-- The writer's set statement of profile updates (persistence/postgres,
-- setUpdateUsersSQL) keeps user_updated_order itself, for all its rows in one
-- UPDATE, and says so for the span of that statement with the transaction-local
-- setting userservice.updated_order_kept = 'on'. The row trigger ran a PL/pgSQL
-- function, and in it a statement of its own, for every row (issue 16: about 0.01
-- ms of PostgreSQL per PUT /me; docs/design.md, "Set statements").
-- Every other writer of users (the writer's statements of one row, imports,
-- erasure, a hand-written UPDATE) leaves the setting unset, and the trigger keeps
-- the order for it exactly as before.
DROP TRIGGER users_updated_order_changes ON users;
CREATE TRIGGER users_updated_order_changes AFTER UPDATE ON users
    FOR EACH ROW
    WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at
          AND current_setting('userservice.updated_order_kept', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION user_updated_order_apply();

-- +goose Down
DROP TRIGGER users_updated_order_changes ON users;
CREATE TRIGGER users_updated_order_changes AFTER UPDATE ON users
    FOR EACH ROW
    WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION user_updated_order_apply();
