"""Settings of worker_pdf: the shared sections plus the knobs of parsing and chunking."""

from __future__ import annotations

from pydantic import Field

from pdfchat.common.settings import CommonSettings, NatsSettings, ObjectStoreSettings, ServiceAddresses


class WorkerPdfSettings(CommonSettings, NatsSettings, ObjectStoreSettings, ServiceAddresses):
    worker_pdf_concurrency: int = Field(default=2, ge=1)
    """Parse jobs handled at once by one replica; each parses in its own child process."""
    worker_pdf_chunk_target_chars: int = Field(default=900, ge=100)
    """Target size of a segment in characters; blocks are packed up to it, longer ones split at sentences."""
    worker_pdf_embed_batch_size: int = Field(default=32, ge=1)
    """Segment ids per `jobs.embed` message."""
    worker_pdf_upsert_batch_size: int = Field(default=128, ge=1)
    """Segments per vector_index.UpsertSegments call."""
    worker_pdf_max_pages: int = Field(default=2000, ge=1)
    """A document with more pages than this fails with a readable reason instead of being parsed."""
    worker_pdf_range_pages: int = Field(default=16, ge=1)
    """Pages per page-range parse job; a document with no more pages is parsed by one job, a bigger one fans
    out into range jobs that any replica takes."""
    worker_pdf_page_time_limit_seconds: float = Field(default=30.0, gt=0)
    """Time one page may take (OCR included); a page that takes longer has no text and the document goes on."""
    worker_pdf_job_time_limit_seconds: float = Field(default=600.0, gt=0)
    """Time one parse job may spend on its pages; pages not started by then have no text."""
    worker_pdf_ocr_languages: str = "eng+chi_sim"
    """Tesseract languages for pages without a text layer, joined with '+'; empty turns OCR off."""
    worker_pdf_ocr_dpi: int = Field(default=200, ge=72, le=600)
    """Resolution pages are rendered at for OCR."""
    worker_pdf_tessdata_dir: str = ""
    """Directory of Tesseract's *.traineddata; empty: TESSDATA_PREFIX, then where PyMuPDF and Debian keep it."""
    worker_pdf_ack_wait_seconds: float = Field(default=60.0, gt=0)
    """JetStream AckWait of the parse consumer; the job is marked in progress at a third of it."""
    worker_pdf_max_deliver: int = Field(default=5, ge=1)
    """Deliveries of a parse job before it goes to the dead-letter stream."""
