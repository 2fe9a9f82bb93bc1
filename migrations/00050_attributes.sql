-- +goose Up
-- Custom attributes (issue 15): admin-defined schemas per namespace, and each
-- user's value (one JSON object) per namespace. version lets every process check
-- its schema cache cheaply (max(version) changes with any PUT).
CREATE TABLE attribute_schemas (
    namespace  text        PRIMARY KEY,
    schema     jsonb       NOT NULL,
    version    bigint      NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE SEQUENCE attribute_schema_version_seq;

CREATE TABLE user_attributes (
    user_id    uuid        NOT NULL REFERENCES users (id),
    namespace  text        NOT NULL,
    value      jsonb       NOT NULL,
    -- {namespace: value}, written with value: what the search's GIN index holds.
    doc        jsonb       NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, namespace)
);
-- Search by attribute (attr.<ns>.<key>=<value>) is one containment of
-- {ns: {key: v, …}} in doc: the namespace is part of the indexed document, so
-- the GIN index (jsonb_path_ops answers @>) alone finds the rows. (An index on
-- the expression jsonb_build_object(namespace, value) is refused: not IMMUTABLE.)
CREATE INDEX user_attributes_doc_idx ON user_attributes USING gin (doc jsonb_path_ops);

-- +goose Down
DROP TABLE user_attributes;
DROP SEQUENCE attribute_schema_version_seq;
DROP TABLE attribute_schemas;
