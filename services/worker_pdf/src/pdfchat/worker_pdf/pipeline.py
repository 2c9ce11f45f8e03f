"""The parse pipeline: one ParseJob from the stored original to segments, embed jobs and progress.

For each job: read the original, report PARSING with the page count, then page range by page range
extract, chunk and upsert the new segments to vector_index, reporting pages done after each range. Once
every segment is stored, the `jobs.embed` batches go out and the document is reported EMBEDDING with its
chunk count, or READY when it has no text at all.

Embed jobs wait for the last upsert on purpose: the embedding worker reports progress as "segments stored
/ segments embedded" from vector_index, so an embed batch running while later pages are still being
stored would make a half-parsed document look completely embedded (READY).

Redelivery is safe: chunking is deterministic, so segment ids (from document, version, ordinal) and embed
batch message ids (`embed:<doc>:<version>:<batch>`) come out the same, and vector_index and JetStream's
duplicate window turn the repeat into an overwrite.

Outcomes for the consumer: `run()` returns normally when the job is finished with, including input that
can never be parsed (reported FAILED with a readable reason, so it is not retried forever) and jobs for a
document that was deleted, reprocessed to another version, or already finished (dropped). Anything else
it raises, transient faults included, so the job is redelivered.

The pipeline's dependencies are the small protocols below; `remote` holds the real gRPC and JetStream
implementations, tests pass local ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from pdfchat.common.errors import NotFound
from pdfchat.v1 import common_pb2, vector_index_pb2
from pdfchat.worker_pdf.chunking import Chunk, chunk_pages, segment_id
from pdfchat.worker_pdf.extraction import PdfFile, UnreadablePdf, open_pdf

log = logging.getLogger(__name__)

DocumentStatus = common_pb2.DocumentStatus
PARSING = common_pb2.DOCUMENT_STATUS_PARSING
EMBEDDING = common_pb2.DOCUMENT_STATUS_EMBEDDING
READY = common_pb2.DOCUMENT_STATUS_READY
FAILED = common_pb2.DOCUMENT_STATUS_FAILED
_FINAL = frozenset({READY, FAILED})

FAILED_STAGE = "parse"
MISSING_ORIGINAL = "the uploaded file is missing from storage"


@dataclass(frozen=True)
class Progress:
    status: DocumentStatus.ValueType
    pages_total: int = 0
    pages_done: int = 0
    chunks_total: int = 0
    error: str = ""
    failed_stage: str = ""


@dataclass(frozen=True)
class DocumentState:
    """The document as ingestion holds it after a report."""

    version: int
    status: DocumentStatus.ValueType


class DocumentGone(Exception):
    """Ingestion no longer takes reports for the job's document: deleted, not this tenant's, or refused."""

    def __init__(self, reason: str = "the document no longer exists") -> None:
        super().__init__(reason)
        self.reason = reason


class OriginalStore(Protocol):
    async def get(self, key: str) -> bytes:
        """The stored original; raises pdfchat.common.errors.NotFound when it is missing."""
        ...


class ProgressReporter(Protocol):
    async def report(self, job: common_pb2.ParseJob, progress: Progress) -> DocumentState | None:
        """Tells ingestion how the job's document version is doing.

        Returns the document's state after the report (None when unknown); raises DocumentGone when the
        document no longer exists. Transient faults raise anything else.
        """
        ...


class SegmentSink(Protocol):
    async def upsert(self, segments: Sequence[vector_index_pb2.Segment]) -> None:
        """Stores segments, idempotently by id."""
        ...


class EmbedJobPublisher(Protocol):
    async def publish(self, job: common_pb2.EmbedJob, msg_id: str) -> None:
        """Queues an embed job; a repeat with the same msg_id is stored once."""
        ...


@dataclass(frozen=True)
class ParseLimits:
    target_chars: int = 900
    embed_batch_size: int = 32
    upsert_batch_size: int = 128
    max_pages: int = 2000
    progress_every_pages: int = 10


class Outcome(Enum):
    EMBEDDING = "embedding"
    """Segments stored and embed jobs published."""
    READY = "ready"
    """The document has no text: nothing to embed."""
    FAILED = "failed"
    """The input can never be parsed; reported FAILED."""
    DROPPED = "dropped"
    """The document is gone, at another version, or already finished: nothing to do."""


@dataclass(frozen=True)
class ParseResult:
    outcome: Outcome
    pages: int = 0
    chunks: int = 0
    reason: str = ""


class _Dropped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def embed_msg_id(document_id: str, version: int, batch_index: int) -> str:
    return f"embed:{document_id}:{version}:{batch_index}"


def to_segment(job: common_pb2.ParseJob, chunk: Chunk) -> vector_index_pb2.Segment:
    return vector_index_pb2.Segment(
        id=segment_id(job.document_id, job.version, chunk.ordinal),
        document_id=job.document_id,
        version=job.version,
        page=chunk.page,
        ordinal=chunk.ordinal,
        text=chunk.text,
        boxes=[common_pb2.BoundingBox(x0=x0, y0=y0, x1=x1, y1=y1) for x0, y0, x1, y1 in chunk.boxes],
    )


class ParsePipeline:
    def __init__(
        self,
        store: OriginalStore,
        reporter: ProgressReporter,
        segments: SegmentSink,
        publisher: EmbedJobPublisher,
        limits: ParseLimits = ParseLimits(),
    ) -> None:
        self._store = store
        self._reporter = reporter
        self._segments = segments
        self._publisher = publisher
        self._limits = limits

    async def run(self, job: common_pb2.ParseJob) -> ParseResult:
        """Parses one job's document; see the module docstring for what returning and raising mean."""
        try:
            return await self._run(job)
        except UnreadablePdf as exc:
            return await self._fail(job, exc.reason)
        except (_Dropped, DocumentGone) as exc:
            log.info("dropping parse job of %s v%d: %s", job.document_id, job.version, exc.reason)
            return ParseResult(Outcome.DROPPED, reason=exc.reason)

    async def _run(self, job: common_pb2.ParseJob) -> ParseResult:
        try:
            data = await self._store.get(job.object_key)
        except NotFound:
            return await self._fail(job, MISSING_ORIGINAL)
        pdf = await open_pdf(data)
        del data
        try:
            return await self._parse(job, pdf)
        finally:
            await pdf.close()

    async def _parse(self, job: common_pb2.ParseJob, pdf: PdfFile) -> ParseResult:
        limits, pages = self._limits, pdf.page_count
        if pages > limits.max_pages:
            raise UnreadablePdf(f"the PDF has {pages} pages, more than the limit of {limits.max_pages}")
        await self._report(job, Progress(PARSING, pages_total=pages))
        segment_ids: list[str] = []
        for first in range(1, pages + 1, limits.progress_every_pages):
            last = min(first + limits.progress_every_pages - 1, pages)
            chunks = chunk_pages(await pdf.extract_pages(first, last), limits.target_chars, len(segment_ids))
            segments = [to_segment(job, chunk) for chunk in chunks]
            for start in range(0, len(segments), limits.upsert_batch_size):
                await self._segments.upsert(segments[start : start + limits.upsert_batch_size])
            segment_ids += [segment.id for segment in segments]
            if last < pages:
                await self._report(job, Progress(PARSING, pages_total=pages, pages_done=last))
        await self._publish_embed_jobs(job, segment_ids)
        chunks_total = len(segment_ids)
        if chunks_total == 0:
            await self._report(job, Progress(READY, pages_total=pages, pages_done=pages))
            return ParseResult(Outcome.READY, pages=pages)
        await self._report(job, Progress(EMBEDDING, pages_total=pages, pages_done=pages, chunks_total=chunks_total))
        return ParseResult(Outcome.EMBEDDING, pages=pages, chunks=chunks_total)

    async def _publish_embed_jobs(self, job: common_pb2.ParseJob, segment_ids: Sequence[str]) -> None:
        """Publishes the ids in batches; batch k always holds ordinals k*size onwards, so a redelivered
        job publishes the same messages under the same ids."""
        size = self._limits.embed_batch_size
        for index, start in enumerate(range(0, len(segment_ids), size)):
            embed_job = common_pb2.EmbedJob(
                tenant_id=job.tenant_id,
                document_id=job.document_id,
                version=job.version,
                segment_ids=segment_ids[start : start + size],
                request_id=job.request_id,
            )
            await self._publisher.publish(embed_job, embed_msg_id(job.document_id, job.version, index))

    async def _report(self, job: common_pb2.ParseJob, progress: Progress) -> None:
        state = await self._reporter.report(job, progress)
        if state is None:
            return
        if state.version != job.version:
            raise _Dropped(f"the document is at version {state.version} now")
        if state.status in _FINAL and progress.status not in _FINAL:
            raise _Dropped(f"the document is already {DocumentStatus.Name(state.status)}")

    async def _fail(self, job: common_pb2.ParseJob, reason: str) -> ParseResult:
        log.info("document %s v%d cannot be parsed: %s", job.document_id, job.version, reason)
        try:
            await self._reporter.report(job, Progress(FAILED, error=reason, failed_stage=FAILED_STAGE))
        except DocumentGone as exc:
            return ParseResult(Outcome.DROPPED, reason=exc.reason)
        return ParseResult(Outcome.FAILED, reason=reason)
