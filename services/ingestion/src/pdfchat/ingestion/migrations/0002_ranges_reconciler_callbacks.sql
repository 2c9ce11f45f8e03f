-- Issue 3: page-range accounting, the stuck-document reconciler, the vector_index swap and sweeps,
-- the encrypted upload password, and the callback outbox.

-- Finished page ranges of a document version, as worker_pdf reports them. Keyed by the range start:
-- a redelivered range job reports the same range again and changes nothing.
CREATE TABLE page_ranges (
    document_id text        NOT NULL,
    version     integer     NOT NULL,
    page_start  integer     NOT NULL CHECK (page_start >= 1),
    page_end    integer     NOT NULL,
    segments    integer     NOT NULL CHECK (segments >= 0),
    tenant_id   text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, version, page_start),
    CHECK (page_end >= page_start)
);

ALTER TABLE documents
    -- How many times the parse job of the current version was published by the stuck reconciler's count.
    ADD COLUMN parse_attempts integer NOT NULL DEFAULT 1,
    -- Fernet token of the upload's PDF password (never the plain text); NULL when none was given.
    ADD COLUMN password_encrypted text,
    -- The version vector_index has been told to answer with (ActivateVersion); lags `version` until the
    -- new version is READY and the swap succeeded.
    ADD COLUMN activated_version integer NOT NULL DEFAULT 0,
    -- When set, the sweeper deletes the document's segments again at that time (all of them when deleted,
    -- the versions other than the activated one otherwise): a worker racing a delete or a swap may write
    -- segments after the first clean-up.
    ADD COLUMN sweep_after timestamptz;

-- The reconciler's work: live documents in a non-final state (stuck when no progress for a while),
-- READY versions not yet activated, sweeps due.
CREATE INDEX documents_in_flight ON documents (updated_at)
    WHERE status IN ('QUEUED', 'PARSING', 'EMBEDDING') AND deleted_at IS NULL;
CREATE INDEX documents_unactivated ON documents (updated_at)
    WHERE status = 'READY' AND deleted_at IS NULL AND activated_version < version;
CREATE INDEX documents_sweep_due ON documents (sweep_after) WHERE sweep_after IS NOT NULL;

-- Outcome callbacks (the upload's callback_url), written in the transaction that makes the version final,
-- so a crash cannot lose one; a background task delivers them with retries.
CREATE TABLE callback_deliveries (
    id              bigserial PRIMARY KEY,
    tenant_id       text        NOT NULL,
    document_id     text        NOT NULL,
    version         integer     NOT NULL,
    url             text        NOT NULL,
    -- The exact bytes that are POSTed and signed.
    body            text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (document_id, version)
);
CREATE INDEX callback_deliveries_due ON callback_deliveries (next_attempt_at) WHERE state = 'pending';

CREATE TABLE callback_attempts (
    delivery_id  bigint      NOT NULL REFERENCES callback_deliveries (id) ON DELETE CASCADE,
    attempt      integer     NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code  integer,
    error        text        NOT NULL DEFAULT '',
    duration_ms  integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (delivery_id, attempt)
);
