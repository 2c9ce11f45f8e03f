-- Chat sessions and their messages. Every row carries tenant_id; every query filters by it.
-- Ids are text (uuid4 hex made by the service): a malformed id from a caller is simply not found.

CREATE TABLE sessions (
    id           text PRIMARY KEY,
    tenant_id    text NOT NULL,
    user_id      text NOT NULL DEFAULT '',
    document_ids text[] NOT NULL CHECK (cardinality(document_ids) > 0),
    title        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX sessions_tenant_created_idx ON sessions (tenant_id, created_at DESC);

CREATE TABLE messages (
    id         text PRIMARY KEY,
    session_id text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    tenant_id  text NOT NULL,
    role       text NOT NULL CHECK (role IN ('user', 'assistant')),
    content    text NOT NULL DEFAULT '',
    -- Every passage the answer was given, in the order it numbers them ([1] is the first), each with
    -- "cited": the rank of its first mention in the answer (0: not cited).
    citations  jsonb NOT NULL DEFAULT '[]'::jsonb,
    usage      jsonb,
    model      text NOT NULL DEFAULT '',
    status     text NOT NULL CHECK (status IN ('streaming', 'complete', 'failed')),
    -- clock_timestamp, not now(): a question and its answer written in one transaction still sort in order.
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX messages_session_created_idx ON messages (tenant_id, session_id, created_at);
