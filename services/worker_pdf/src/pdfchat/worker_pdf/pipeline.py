"""The parse pipeline: one ParseJob from the stored original to segments, embed jobs and progress.

Big documents fan out. A planning job (`page_start == 0`) opens the PDF (with the upload's password),
checks it has readable pages and no more than `max_pages`, and reports PARSING with `pages_total`. A
document of at most `range_pages` pages is then parsed by the planning job itself; a bigger one becomes
page-range ParseJobs on the same subject (msg id `parse:<doc>:<version>:<start>-<end>`, so a repeated
planning job publishes nothing new), which any worker replica takes.

A page range (the planning job's own or a range job's) is extracted page by page, each page bounded in
time (see `extraction`); a page that fails or takes too long has no text, is counted and logged, and the
document goes on. Its chunks are upserted to vector_index, embed jobs for exactly those segments are
published (msg id `embed:<doc>:<version>:<start>-<end>:<batch>`), and then the range is reported:
PARSING with `range_result` (pages and segment count). Ingestion records range results idempotently,
counts the document parsed when the ranges cover every page, sums the segments into `chunks_total` and
marks it READY once all of them are embedded; the worker never reports EMBEDDING or READY itself.

Redelivery is safe: a chunk's ordinal is `page * 10000 + index on the page` and its segment id is derived
from (document, version, ordinal), so a range parsed again, by whichever replica, yields the same ids, and
vector_index and JetStream's duplicate window turn the repeat into an overwrite.

Outcomes for the consumer: `run()` returns normally when the job is finished with, including input that
can never be parsed (reported FAILED with a readable reason, so it is not retried forever) and jobs for a
document that was deleted, reprocessed to another version, or already finished (dropped). Anything else
it raises, transient faults included, so the job is redelivered.

The pipeline's dependencies are the small protocols below; `remote` holds the real gRPC and JetStream
implementations, tests pass local ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from pdfchat.common.errors import NotFound
from pdfchat.v1 import common_pb2, vector_index_pb2
from pdfchat.worker_pdf.chunking import Chunk, chunk_pages, segment_id
from pdfchat.worker_pdf.extraction import ExtractionLimits, PdfFile, UnreadablePdf, open_pdf

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
class RangeResult:
    """A page range parsed: its pages (1-based, inclusive) and how many segments they gave."""

    page_start: int
    page_end: int
    segments: int


@dataclass(frozen=True)
class Progress:
    status: DocumentStatus.ValueType
    pages_total: int = 0
    pages_done: int = 0
    chunks_total: int = 0
    error: str = ""
    failed_stage: str = ""
    range_result: RangeResult | None = None


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


class ParseJobPublisher(Protocol):
    async def publish(self, job: common_pb2.ParseJob, msg_id: str) -> None:
        """Queues a (page-range) parse job; a repeat with the same msg_id is stored once."""
        ...


@dataclass(frozen=True)
class ParseLimits:
    target_chars: int = 900
    embed_batch_size: int = 32
    upsert_batch_size: int = 128
    max_pages: int = 2000
    range_pages: int = 16
    """Pages per range job; a document with no more pages is parsed by its planning job."""
    job_time_limit: float = 600.0
    """Seconds a job may spend extracting; pages not started by then are given up as having no text."""
    extraction: ExtractionLimits = field(default_factory=ExtractionLimits)


class Outcome(Enum):
    PARSED = "parsed"
    """A page range's segments stored, their embed jobs published and the range reported."""
    FANNED_OUT = "fanned out"
    """A planning job published the document's page-range jobs."""
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
    failed_pages: tuple[int, ...] = ()
    """Pages that failed or took too long and so have no text."""


class _Dropped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def embed_msg_id(document_id: str, version: int, page_start: int, page_end: int, batch_index: int) -> str:
    return f"embed:{document_id}:{version}:{page_start}-{page_end}:{batch_index}"


def parse_msg_id(document_id: str, version: int, page_start: int = 0, page_end: int = 0) -> str:
    """The msg id of a parse job: ingestion's planning job has no range, a range job names its pages."""
    if page_start == 0:
        return f"parse:{document_id}:{version}"
    return f"parse:{document_id}:{version}:{page_start}-{page_end}"


def page_ranges(pages: int, size: int) -> list[tuple[int, int]]:
    """[first, last] pages (1-based, inclusive) of consecutive ranges of `size` pages covering `pages`."""
    return [(first, min(first + size - 1, pages)) for first in range(1, pages + 1, size)]


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
        range_publisher: ParseJobPublisher,
        limits: ParseLimits = ParseLimits(),
    ) -> None:
        self._store = store
        self._reporter = reporter
        self._segments = segments
        self._publisher = publisher
        self._range_publisher = range_publisher
        self._limits = limits

    async def run(self, job: common_pb2.ParseJob) -> ParseResult:
        """Handles one planning or range job; see the module docstring for what returning and raising mean."""
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
        planning = job.page_start == 0
        pdf = await open_pdf(data, job.password, self._limits.extraction, probe=planning)
        try:
            if planning:
                return await self._plan(job, pdf)
            if job.page_end > pdf.page_count:
                raise UnreadablePdf(f"pages {job.page_start}-{job.page_end} are not in the {pdf.page_count}-page PDF")
            await self._report(job, Progress(PARSING, pages_total=pdf.page_count))
            return await self._parse_range(job, pdf, job.page_start, job.page_end)
        finally:
            await pdf.close()

    async def _plan(self, job: common_pb2.ParseJob, pdf: PdfFile) -> ParseResult:
        limits, pages = self._limits, pdf.page_count
        if pages > limits.max_pages:
            raise UnreadablePdf(f"the PDF has {pages} pages, more than the limit of {limits.max_pages}")
        await self._report(job, Progress(PARSING, pages_total=pages))
        if pages <= limits.range_pages:
            return await self._parse_range(job, pdf, 1, pages)
        for first, last in page_ranges(pages, limits.range_pages):
            range_job = common_pb2.ParseJob()
            range_job.CopyFrom(job)
            range_job.page_start, range_job.page_end, range_job.pages_total = first, last, pages
            await self._range_publisher.publish(range_job, parse_msg_id(job.document_id, job.version, first, last))
        return ParseResult(Outcome.FANNED_OUT, pages=pages)

    async def _parse_range(self, job: common_pb2.ParseJob, pdf: PdfFile, first: int, last: int) -> ParseResult:
        limits, pages_total = self._limits, pdf.page_count
        outcomes = await pdf.extract_pages(first, last, deadline=time.monotonic() + limits.job_time_limit)
        failed = tuple(outcome.page.number for outcome in outcomes if outcome.failure)
        for outcome in outcomes:
            if outcome.failure:
                log.warning(
                    "page %d of document %s v%d has no text: %s",
                    outcome.page.number,
                    job.document_id,
                    job.version,
                    outcome.failure,
                    extra={"page": outcome.page.number, "reason": outcome.failure},
                )
            elif outcome.ocr_unavailable:
                log.warning(
                    "page %d of document %s v%d looks scanned but OCR is unavailable: it has no text",
                    outcome.page.number,
                    job.document_id,
                    job.version,
                )
        chunks = chunk_pages([outcome.page for outcome in outcomes], limits.target_chars)
        segments = [to_segment(job, chunk) for chunk in chunks]
        for start in range(0, len(segments), limits.upsert_batch_size):
            await self._segments.upsert(segments[start : start + limits.upsert_batch_size])
        await self._publish_embed_jobs(job, first, last, [segment.id for segment in segments])
        result = RangeResult(page_start=first, page_end=last, segments=len(segments))
        # the last range may make the document READY at once: only a new version means the work was wasted
        await self._report(job, Progress(PARSING, pages_total=pages_total, range_result=result), settled=False)
        return ParseResult(Outcome.PARSED, pages=last - first + 1, chunks=len(segments), failed_pages=failed)

    async def _publish_embed_jobs(
        self, job: common_pb2.ParseJob, first: int, last: int, segment_ids: Sequence[str]
    ) -> None:
        """Publishes the range's ids in batches; the same range always gives the same batches under the
        same msg ids, so a redelivered job publishes nothing new."""
        size = self._limits.embed_batch_size
        for index, start in enumerate(range(0, len(segment_ids), size)):
            embed_job = common_pb2.EmbedJob(
                tenant_id=job.tenant_id,
                document_id=job.document_id,
                version=job.version,
                segment_ids=segment_ids[start : start + size],
                request_id=job.request_id,
            )
            await self._publisher.publish(embed_job, embed_msg_id(job.document_id, job.version, first, last, index))

    async def _report(self, job: common_pb2.ParseJob, progress: Progress, settled: bool = True) -> None:
        """Reports; raises _Dropped when the document moved to another version or (with `settled`) is
        already READY or FAILED, so the job has nothing left to do."""
        state = await self._reporter.report(job, progress)
        if state is None:
            return
        if state.version != job.version:
            raise _Dropped(f"the document is at version {state.version} now")
        if settled and state.status in _FINAL and progress.status not in _FINAL:
            raise _Dropped(f"the document is already {DocumentStatus.Name(state.status)}")

    async def _fail(self, job: common_pb2.ParseJob, reason: str) -> ParseResult:
        log.info("document %s v%d cannot be parsed: %s", job.document_id, job.version, reason)
        try:
            await self._reporter.report(job, Progress(FAILED, error=reason, failed_stage=FAILED_STAGE))
        except DocumentGone as exc:
            return ParseResult(Outcome.DROPPED, reason=exc.reason)
        return ParseResult(Outcome.FAILED, reason=reason)
