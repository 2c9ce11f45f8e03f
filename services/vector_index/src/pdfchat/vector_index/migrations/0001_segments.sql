-- Segments of documents, per tenant: text with page and boxes for citations, a tsvector for full text
-- search (prepared by fts.py, see there why) and the embedding (NULL until the embedding service sets it).
-- Runs with search_path = vector_index, public; the vector extension lives in public.
CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;

CREATE TABLE segments (
    id          uuid PRIMARY KEY,
    tenant_id   text        NOT NULL,
    document_id text        NOT NULL,
    version     integer     NOT NULL,
    page        integer     NOT NULL,
    ordinal     integer     NOT NULL,
    text        text        NOT NULL,
    -- [[x0, y0, x1, y1], ...] in PDF points, origin top-left.
    boxes       jsonb       NOT NULL DEFAULT '[]',
    search_text tsvector    NOT NULL,
    embedding   vector(384),
    model       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX segments_embedding_hnsw ON segments USING hnsw (embedding vector_cosine_ops);
CREATE INDEX segments_search_text_gin ON segments USING gin (search_text);
CREATE INDEX segments_document ON segments (tenant_id, document_id, version);
