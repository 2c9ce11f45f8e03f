"""Settings of worker_pdf: the shared sections plus the knobs of parsing and chunking."""

from __future__ import annotations

from pydantic import Field

from pdfchat.common.settings import CommonSettings, NatsSettings, ObjectStoreSettings, ServiceAddresses


class WorkerPdfSettings(CommonSettings, NatsSettings, ObjectStoreSettings, ServiceAddresses):
    worker_pdf_concurrency: int = Field(default=2, ge=1)
    """Parse jobs handled at once by one replica (PDF parsing itself runs on one thread per process)."""
    worker_pdf_chunk_target_chars: int = Field(default=900, ge=100)
    """Target size of a segment in characters; blocks are packed up to it, longer ones split at sentences."""
    worker_pdf_embed_batch_size: int = Field(default=32, ge=1)
    """Segment ids per `jobs.embed` message."""
    worker_pdf_upsert_batch_size: int = Field(default=128, ge=1)
    """Segments per vector_index.UpsertSegments call."""
    worker_pdf_max_pages: int = Field(default=2000, ge=1)
    """A document with more pages than this fails with a readable reason instead of being parsed."""
    worker_pdf_progress_every_pages: int = Field(default=10, ge=1)
    """Pages extracted between two PARSING progress reports."""
    worker_pdf_ack_wait_seconds: float = Field(default=60.0, gt=0)
    """JetStream AckWait of the parse consumer; the job is marked in progress at a third of it."""
    worker_pdf_max_deliver: int = Field(default=5, ge=1)
    """Deliveries of a parse job before it goes to the dead-letter stream."""
