-- Documents of the ingest path: one row per uploaded original, its version and its stage state.
-- Runs with search_path set to the `ingestion` schema (see pdfchat.common.db.migrate).

CREATE TABLE documents (
    id               text PRIMARY KEY,
    tenant_id        text NOT NULL,
    user_id          text NOT NULL DEFAULT '',
    filename         text NOT NULL,
    content_type     text NOT NULL DEFAULT 'application/pdf',
    size_bytes       bigint NOT NULL,
    sha256           text NOT NULL,
    object_key       text NOT NULL,
    status           text NOT NULL DEFAULT 'QUEUED'
                     CHECK (status IN ('QUEUED', 'PARSING', 'EMBEDDING', 'READY', 'FAILED')),
    version          integer NOT NULL DEFAULT 1,
    pages            integer NOT NULL DEFAULT 0,
    pages_done       integer NOT NULL DEFAULT 0,
    chunks_total     integer NOT NULL DEFAULT 0,
    chunks_done      integer NOT NULL DEFAULT 0,
    error            text NOT NULL DEFAULT '',
    failed_stage     text NOT NULL DEFAULT '',
    idempotency_key  text,
    callback_url     text NOT NULL DEFAULT '',
    -- When the ParseJob of the current version was accepted by JetStream; NULL means the reconciler
    -- must (re)publish it.
    job_published_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    -- When the original and the document's segments were removed after a delete; NULL on a deleted
    -- row means the reconciler must retry the clean-up.
    purged_at        timestamptz
);

-- One live document per file and tenant: a duplicate upload returns the existing one.
CREATE UNIQUE INDEX documents_tenant_sha256_live ON documents (tenant_id, sha256) WHERE deleted_at IS NULL;

-- An idempotency key names the live document its upload created.
CREATE UNIQUE INDEX documents_tenant_idempotency_key_live ON documents (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND deleted_at IS NULL;

-- ListDocuments: newest first, keyset pagination on (created_at, id).
CREATE INDEX documents_tenant_created ON documents (tenant_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;

-- The reconciler's work: queued documents whose job was never accepted, deleted ones not yet purged.
CREATE INDEX documents_unpublished ON documents (updated_at) WHERE status = 'QUEUED' AND job_published_at IS NULL;
CREATE INDEX documents_unpurged ON documents (deleted_at) WHERE deleted_at IS NOT NULL AND purged_at IS NULL;
