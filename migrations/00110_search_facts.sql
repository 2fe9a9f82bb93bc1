-- +goose Up
-- What the admin search's count reads changes rarely (issue 16). A count depends
-- only on users' search_text, role and status; a term every user matches costs a
-- LIKE per user (3-5 ms on 10,000), yet the writes of a running platform
-- (progress, enrollments, preferences, a bio) change none of the three. Every
-- transaction that does change one of them (a registration, a rename, a role or
-- status change, a deletion, an erasure, a purge) stamps its transaction id into
-- one row of search_facts, so that two snapshots that read the same stamps see
-- the same search facts, and a count read in one answers in the other
-- (postgres.Directory keeps such counts, each with its stamps).
--
-- Why the stamps name exactly the visible changes: the stamps of one slot are
-- written one transaction after another (the row's lock), so a snapshot that sees
-- a slot's stamp sees every earlier stamper of that slot; the stamps are
-- transaction ids, never reused in a cluster, so equal stamps in every slot mean
-- the same set of stamping transactions, hence the same facts. Rows are never
-- added or removed after this migration.
--
-- The stamp is written by a deferred constraint trigger, at COMMIT, once per
-- transaction: the slot's row lock is then the last lock the transaction takes
-- (no deadlock with the users rows it already holds) and is held only until the
-- commit. The slot is the backend's pid modulo 32, so two writers wait on each
-- other only when their pids share a slot and both commit such a change at once.
-- Writes that change none of the three columns evaluate the WHEN clause and
-- nothing else.
CREATE TABLE search_facts (
    slot  integer PRIMARY KEY,
    xact  xid8    NOT NULL
);
INSERT INTO search_facts (slot, xact) SELECT s, pg_current_xact_id() FROM generate_series(0, 31) AS s;

-- +goose StatementBegin
CREATE FUNCTION search_facts_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Once per transaction: a million-row import stamps once. The setting is
    -- transaction-local (and undone with a rolled-back savepoint, like the stamp).
    IF current_setting('userservice.search_facts_stamped', true) = 'on' THEN
        RETURN NULL;
    END IF;
    UPDATE search_facts SET xact = pg_current_xact_id() WHERE slot = pg_backend_pid() % 32;
    PERFORM set_config('userservice.search_facts_stamped', 'on', true);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE CONSTRAINT TRIGGER users_search_facts_rows AFTER INSERT OR DELETE ON users
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION search_facts_stamp();
CREATE CONSTRAINT TRIGGER users_search_facts_changes AFTER UPDATE ON users
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (OLD.search_text IS DISTINCT FROM NEW.search_text OR OLD.role IS DISTINCT FROM NEW.role
          OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION search_facts_stamp();
-- TRUNCATE fires no row trigger; it holds users exclusively, so stamping at once
-- cannot deadlock.
CREATE TRIGGER users_search_facts_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION search_facts_stamp();

-- +goose Down
DROP TRIGGER users_search_facts_truncate ON users;
DROP TRIGGER users_search_facts_changes ON users;
DROP TRIGGER users_search_facts_rows ON users;
DROP FUNCTION search_facts_stamp();
DROP TABLE search_facts;
