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
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, namespace)
);
-- Search by attribute (attr.<ns>.<key>=<value>) is value @> '{"key": v}' AND
-- namespace = ns: jsonb_path_ops answers containment.
CREATE INDEX user_attributes_value_idx ON user_attributes USING gin (value jsonb_path_ops);

-- +goose Down
DROP TABLE user_attributes;
DROP SEQUENCE attribute_schema_version_seq;
DROP TABLE attribute_schemas;
