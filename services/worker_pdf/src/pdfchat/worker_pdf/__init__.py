"""worker_pdf: turns uploaded PDFs into page-anchored segments and queues them for embedding.

It consumes `jobs.parse`, reads the original from the object store, extracts text blocks with their
boxes page by page (PyMuPDF), chunks them without ever crossing a page, upserts the segments to
vector_index, publishes `jobs.embed` batches and reports progress to ingestion. It serves gRPC health only.
"""
