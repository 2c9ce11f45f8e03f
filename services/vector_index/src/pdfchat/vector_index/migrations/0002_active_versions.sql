-- The one version of each document that searches see. A document without a row is not searchable yet
-- (its first version is activated when it is READY); ingestion moves the row forward after a reprocess,
-- in one statement, so a search sees either every segment of the old version or every one of the new.
CREATE TABLE active_versions (
    tenant_id    text        NOT NULL,
    document_id  text        NOT NULL,
    version      integer     NOT NULL CHECK (version >= 1),
    activated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, document_id)
);
