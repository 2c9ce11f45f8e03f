"""The in-process baseline: the suite's ingest work done in one Python process, with the services' own code.

For each PDF, in order: extraction (`pdfchat.worker_pdf.extraction`, which reads pages in a forked child
exactly as worker_pdf does), chunking (`pdfchat.worker_pdf.chunking`, same target size), segment upsert
into pgvector (`pdfchat.vector_index.store.SegmentStore`, the very SQL vector_index runs, in batches of
worker_pdf's upsert size), embedding with the same sentence-transformers model and batching the
embedding service uses (all cores), and the vector upsert per embed-job-sized batch. No gRPC, no NATS,
no progress reports: what is left is the work itself, which is the yardstick for the suite's overhead.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pdfchat.vector_index
from bench.ingest.corpus import CorpusPdf
from pdfchat.common import db, identity
from pdfchat.embedding.models import EmbedKind, SentenceTransformerEmbedder, packaged_model_path
from pdfchat.vector_index.store import Box, Segment, SegmentStore, SegmentVector, init_connection
from pdfchat.worker_pdf import chunking, extraction

TARGET_CHARS = 900  # worker_pdf's default PDFCHAT_WORKER_PDF_CHUNK_TARGET_CHARS
UPSERT_BATCH = 128  # worker_pdf's default PDFCHAT_WORKER_PDF_UPSERT_BATCH_SIZE
EMBED_JOB_BATCH = 32  # worker_pdf's default PDFCHAT_WORKER_PDF_EMBED_BATCH_SIZE
PAGE_RANGE = 10  # pages extracted per call, like worker_pdf's progress step
MIGRATIONS = Path(pdfchat.vector_index.__file__).parent / "migrations"


@dataclass(frozen=True)
class Throughput:
    label: str
    pages: int
    chunks: int
    seconds: float
    load_average: float = 0.0
    """The machine's 1-minute load average when the measurement ended: other work on the cores skews it."""

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0


def _page_text(outcome: Any) -> Any:
    """extract_pages yields PageOutcome (with .page) in the current worker_pdf, PageText in older ones."""
    return outcome if hasattr(outcome, "blocks") else outcome.page


async def _extract(data: bytes) -> list[Any]:
    pdf = await extraction.open_pdf(data)
    try:
        pages: list[Any] = []
        for first in range(1, pdf.page_count + 1, PAGE_RANGE):
            last = min(first + PAGE_RANGE - 1, pdf.page_count)
            pages += [_page_text(outcome) for outcome in await pdf.extract_pages(first, last)]
        return pages
    finally:
        await pdf.close()


def _segments(document_id: str, chunks: Sequence[chunking.Chunk]) -> list[Segment]:
    return [
        Segment(
            id=chunking.segment_id(document_id, 1, chunk.ordinal),
            document_id=document_id,
            version=1,
            page=chunk.page,
            ordinal=chunk.ordinal,
            text=chunk.text,
            boxes=tuple(Box(*box) for box in chunk.boxes),
        )
        for chunk in chunks
    ]


async def run_baseline(corpus: Sequence[CorpusPdf], database_url: str, threads: int | None = None) -> Throughput:
    """Ingests the corpus in this process; the clock runs from the first PDF to the last vector stored
    (model loading and migrations happen before, as the suite's happen at start-up)."""
    threads = threads or os.cpu_count() or 1
    embedder = await SentenceTransformerEmbedder.load(
        packaged_model_path(), threads=threads, max_batch=64, passage_batch=16
    )
    pool = await db.create_pool(database_url, init=init_connection)
    token = identity.bind(identity.Identity(tenant_id="bench-baseline", request_id=uuid.uuid4().hex))
    try:
        await db.migrate(pool, "vector_index", MIGRATIONS)
        store = SegmentStore(pool, dimensions=embedder.dimensions, max_batch=5000)
        pages = chunks = 0
        started = time.perf_counter()
        for pdf in corpus:
            document_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{pdf.name}"))
            page_texts = await _extract(pdf.data)
            segments = _segments(document_id, chunking.chunk_pages(page_texts, TARGET_CHARS))
            for start in range(0, len(segments), UPSERT_BATCH):
                await store.upsert_segments(segments[start : start + UPSERT_BATCH])
            for start in range(0, len(segments), EMBED_JOB_BATCH):
                batch = segments[start : start + EMBED_JOB_BATCH]
                vectors = await embedder.embed([segment.text for segment in batch], EmbedKind.PASSAGE)
                await store.upsert_vectors(
                    [SegmentVector(segment.id, vector) for segment, vector in zip(batch, vectors, strict=True)],
                    embedder.model_name,
                )
            pages += len(page_texts)
            chunks += len(segments)
        seconds = time.perf_counter() - started
    finally:
        identity.reset(token)
        await pool.close()
        await embedder.close()
    return Throughput(f"baseline: 1 process, {threads} torch threads", pages, chunks, seconds)
