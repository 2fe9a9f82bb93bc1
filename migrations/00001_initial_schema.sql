-- +goose Up
-- pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
-- It lives in public so that every schema (tests use one schema each) can use it.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

CREATE TABLE users (
    id                uuid PRIMARY KEY,
    auth_id           uuid        NOT NULL,
    email             text        NOT NULL CHECK (email = lower(email) AND length(email) <= 255),
    username          text,
    first_name        text        NOT NULL,
    last_name         text        NOT NULL,
    display_name      text,
    avatar_url        text,
    bio               text,
    phone             text,
    timezone          text        NOT NULL DEFAULT 'UTC',
    language          text        NOT NULL DEFAULT 'en',
    role              text        NOT NULL CHECK (role IN ('admin', 'instructor', 'student')),
    status            text        NOT NULL CHECK (status IN ('active', 'inactive', 'suspended', 'deleted')),
    email_verified    boolean     NOT NULL DEFAULT false,
    profile_completed boolean     NOT NULL DEFAULT false,
    last_active_at    timestamptz,
    login_count       bigint      NOT NULL DEFAULT 0,
    last_login_at     timestamptz,
    version           bigint      NOT NULL CHECK (version > 0),
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_auth_id_key ON users (auth_id);
CREATE UNIQUE INDEX users_email_key ON users (email);
-- Usernames are unique regardless of case, so "JohnDoe" cannot shadow "johndoe".
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

-- Admin search: one trigram index over the lower-cased searchable fields, joined by
-- a newline (which no name contains). The query matches this expression for the
-- index and re-checks each field for an exact per-field substring match.
CREATE INDEX users_search_trgm ON users USING gin (
    lower(first_name || E'\n' || last_name || E'\n' || email || E'\n' ||
          coalesce(username, '') || E'\n' || coalesce(display_name, '')) public.gin_trgm_ops
);
-- Sort orders of the admin search, each with id as the tie-breaker.
CREATE INDEX users_created_at_idx ON users (created_at, id);
CREATE INDEX users_updated_at_idx ON users (updated_at, id);
CREATE INDEX users_first_name_idx ON users (first_name, id);
CREATE INDEX users_last_name_idx ON users (last_name, id);
CREATE INDEX users_last_active_at_idx ON users (last_active_at, id);
CREATE INDEX users_role_status_idx ON users (role, status);

CREATE TABLE enrollments (
    id                 uuid PRIMARY KEY,
    user_id            uuid        NOT NULL REFERENCES users (id),
    course_id          uuid        NOT NULL,
    enrollment_status  text        NOT NULL CHECK (enrollment_status IN ('active', 'completed', 'dropped', 'suspended')),
    progress           double precision NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 100),
    time_spent_seconds bigint      NOT NULL DEFAULT 0 CHECK (time_spent_seconds >= 0),
    enrolled_at        timestamptz NOT NULL,
    completed_at       timestamptz,
    last_accessed_at   timestamptz,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    CONSTRAINT enrollments_user_course_key UNIQUE (user_id, course_id)
);

-- value is json, not jsonb: jsonb would reorder object keys and drop duplicates, and
-- a value must read back exactly as it was written.
CREATE TABLE preferences (
    id         uuid PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id),
    category   text        NOT NULL CHECK (category IN ('notifications', 'ui', 'learning', 'privacy')),
    key        text        NOT NULL CHECK (key ~ '^[a-z0-9_]{1,64}$'),
    value      json        NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT preferences_user_category_key_key UNIQUE (user_id, category, key)
);

CREATE TABLE sessions (
    id         uuid PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id),
    session_id text        NOT NULL,
    ip_address text,
    user_agent text,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz,
    CONSTRAINT sessions_user_session_key UNIQUE (user_id, session_id)
);
CREATE INDEX sessions_user_started_idx ON sessions (user_id, started_at DESC);

-- Transactional outbox: each event row commits with the change it reports; the relay
-- publishes rows in id order and stamps published_at once the broker confirms.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid        NOT NULL,
    user_id      uuid        NOT NULL,
    routing_key  text        NOT NULL,
    payload      bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Ids of consumed messages, recorded in the same transaction as their effect.
CREATE TABLE processed_messages (
    message_id   text PRIMARY KEY,
    message_type text        NOT NULL DEFAULT '',
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_messages_processed_at_idx ON processed_messages (processed_at);

-- First answers of POSTs with an Idempotency-Key, per caller, kept 24 h.
CREATE TABLE idempotency_keys (
    caller_id    text        NOT NULL,
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    status       integer     NOT NULL,
    body         bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (caller_id, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);

CREATE TABLE audit_log (
    id             uuid PRIMARY KEY,
    user_id        uuid        NOT NULL,
    actor_id       uuid,
    action         text        NOT NULL,
    before         jsonb,
    after          jsonb,
    correlation_id text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL
);
CREATE INDEX audit_log_user_created_idx ON audit_log (user_id, created_at DESC, id);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE idempotency_keys;
DROP TABLE processed_messages;
DROP TABLE outbox;
DROP TABLE sessions;
DROP TABLE preferences;
DROP TABLE enrollments;
DROP TABLE users;
