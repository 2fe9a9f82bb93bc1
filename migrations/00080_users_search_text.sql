-- +goose Up
-- The admin search's text in a column of its own (issue 16). The search matched
-- a term against the trigram index's expression and then re-checked each field
-- with lower() on every candidate, and the planner, unable to cost the
-- expression index well, preferred a sequential scan that evaluated both for
-- every user: 22-28 ms for one count on 10,000 users, about 0.3 of a core at
-- the mix's five searches a second. With the lower-cased text stored, a count of
-- a common term is a bitmap scan of the column's trigram index (0.5-0.9 ms), and
-- even a term every user matches is one LIKE a row (7 ms, was 21 ms).
--
-- The fields are joined with newlines, so a term without a newline matches the
-- text exactly when it matches one field (a newline inside a field only cuts it
-- further); the query re-checks field by field only for a term with a newline.
--
-- A stored generated column is recomputed by PostgreSQL on every write of the
-- row, whoever writes it. An update that changes none of the five fields leaves
-- it equal and stays HOT. Adding it rewrites users once (under an exclusive
-- lock: about 0.5 s for 10,000 users here, so minutes for millions).
ALTER TABLE users ADD COLUMN search_text text GENERATED ALWAYS AS (
    lower(first_name || E'\n' || last_name || E'\n' || email || E'\n' ||
          coalesce(username, '') || E'\n' || coalesce(display_name, ''))) STORED;
CREATE INDEX users_search_text_trgm ON users USING gin (search_text public.gin_trgm_ops);
DROP INDEX users_search_trgm;

-- +goose Down
CREATE INDEX users_search_trgm ON users USING gin (
    lower(first_name || E'\n' || last_name || E'\n' || email || E'\n' ||
          coalesce(username, '') || E'\n' || coalesce(display_name, '')) public.gin_trgm_ops
);
DROP INDEX users_search_text_trgm;
ALTER TABLE users DROP COLUMN search_text;
