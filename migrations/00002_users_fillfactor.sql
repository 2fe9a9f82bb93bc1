-- +goose Up
-- Most writes (enrollments, preferences, logins) update the users row only to advance
-- its version, leaving every indexed column as it was. With free space on the page
-- PostgreSQL can do those as HOT updates, skipping all eleven index insertions.
ALTER TABLE users SET (fillfactor = 80);

-- +goose Down
ALTER TABLE users RESET (fillfactor);
