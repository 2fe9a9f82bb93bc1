-- +goose Up
-- The admin search cache (persistence/redis) keys its entries by this row. Every
-- transaction that changes users rows (a group commit, a lastActiveAt flush) raises
-- gen before it commits, so an entry stored under an older generation is never read
-- again. epoch is new whenever the table is (a recreated database), so that entries
-- of an earlier database with the same gen cannot be mistaken for this one's.
CREATE TABLE search_generation (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    epoch uuid    NOT NULL DEFAULT gen_random_uuid(),
    gen   bigint  NOT NULL DEFAULT 0
);
INSERT INTO search_generation DEFAULT VALUES;

-- +goose Down
DROP TABLE search_generation;
