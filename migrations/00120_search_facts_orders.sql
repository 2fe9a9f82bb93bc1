-- +goose Up
-- The admin search keeps the order of a term's matches by createdAt, firstName,
-- lastName and email with the search facts (issue 16, postgres.orderMemo), so
-- every change of those columns must stamp the facts too. search_text holds the
-- names and the email lower-cased: a rename that changes only letter case
-- changes the order (in any collation that tells cases apart) without changing search_text. createdAt is set
-- at registration, and by an import's upsert.
DROP TRIGGER users_search_facts_changes ON users;
CREATE CONSTRAINT TRIGGER users_search_facts_changes AFTER UPDATE ON users
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (OLD.search_text IS DISTINCT FROM NEW.search_text OR OLD.role IS DISTINCT FROM NEW.role
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.first_name IS DISTINCT FROM NEW.first_name OR OLD.last_name IS DISTINCT FROM NEW.last_name
          OR OLD.email IS DISTINCT FROM NEW.email OR OLD.created_at IS DISTINCT FROM NEW.created_at)
    EXECUTE FUNCTION search_facts_stamp();

-- +goose Down
DROP TRIGGER users_search_facts_changes ON users;
CREATE CONSTRAINT TRIGGER users_search_facts_changes AFTER UPDATE ON users
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (OLD.search_text IS DISTINCT FROM NEW.search_text OR OLD.role IS DISTINCT FROM NEW.role
          OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION search_facts_stamp();
