from pathlib import Path

import pytest

from pdfchat.common.object_store import LocalObjectStore
from pdfchat.worker_pdf.chunking import segment_id
from pdfchat.worker_pdf.extraction import NO_PAGES, PASSWORD_REQUIRED
from pdfchat.worker_pdf.pipeline import (
    EMBEDDING,
    FAILED,
    MISSING_ORIGINAL,
    PARSING,
    READY,
    Outcome,
    ParseLimits,
    ParsePipeline,
    Progress,
)

from ._fakes import (
    PROBLEM_PDFS,
    XQUAD_DOCS,
    RecordingPublisher,
    RecordingReporter,
    RecordingSink,
    parse_job,
    store_with,
)

WARSAW = XQUAD_DOCS / "en" / "docs" / "xquad_01_Warsaw.pdf"
PDKIDS = PROBLEM_PDFS / "pdfjs__pdkids.pdf"
DEFAULT_LIMITS = ParseLimits()


class Harness:
    def __init__(self, store: LocalObjectStore, limits: ParseLimits = DEFAULT_LIMITS) -> None:
        self.reporter = RecordingReporter()
        self.sink = RecordingSink()
        self.publisher = RecordingPublisher()
        self.pipeline = ParsePipeline(store, self.reporter, self.sink, self.publisher, limits)


async def harness_for(tmp_path: Path, source: Path, limits: ParseLimits = DEFAULT_LIMITS) -> tuple[Harness, str]:
    key = f"tenant-a/doc-1/1/{source.name}"
    return Harness(await store_with(tmp_path / "objects", key, source), limits), key


async def test_document_is_parsed_into_segments_embed_jobs_and_embedding_progress(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, WARSAW)
    result = await harness.pipeline.run(parse_job(key))

    segments = harness.sink.segments
    assert result.outcome == Outcome.EMBEDDING
    assert (result.pages, result.chunks) == (2, len(segments))
    assert [segment.ordinal for segment in segments] == list(range(len(segments)))
    assert [segment.id for segment in segments] == [segment_id("doc-1", 1, n) for n in range(len(segments))]
    assert {segment.page for segment in segments} == {1, 2}
    assert all(segment.document_id == "doc-1" and segment.version == 1 for segment in segments)
    assert all(segment.boxes for segment in segments)
    assert "Ogród Saski" in segments[0].text

    assert harness.reporter.reports == [
        Progress(PARSING, pages_total=2),
        Progress(EMBEDDING, pages_total=2, pages_done=2, chunks_total=len(segments)),
    ]
    [(msg_id, embed_job)] = harness.publisher.published
    assert msg_id == "embed:doc-1:1:0"
    assert list(embed_job.segment_ids) == [segment.id for segment in segments]
    assert (embed_job.tenant_id, embed_job.document_id, embed_job.version, embed_job.request_id) == (
        "tenant-a",
        "doc-1",
        1,
        "req-1",
    )


async def test_long_document_reports_pages_as_they_are_parsed_and_batches_embed_jobs(tmp_path: Path) -> None:
    limits = ParseLimits(embed_batch_size=32, upsert_batch_size=50, progress_every_pages=10)
    harness, key = await harness_for(tmp_path, PDKIDS, limits)
    result = await harness.pipeline.run(parse_job(key))

    assert result.outcome == Outcome.EMBEDDING
    reports = harness.reporter.reports
    assert [(report.status, report.pages_done) for report in reports] == [
        (PARSING, 0),
        (PARSING, 10),
        (PARSING, 20),
        (PARSING, 30),
        (PARSING, 40),
        (PARSING, 50),
        (EMBEDDING, 55),
    ]
    assert reports[-1].chunks_total == result.chunks == len(harness.sink.segments)
    ids = [segment.id for segment in harness.sink.segments]
    batches = harness.publisher.published
    assert [msg_id for msg_id, _ in batches] == [f"embed:doc-1:1:{index}" for index in range(len(batches))]
    assert all(len(job.segment_ids) == 32 for _, job in batches[:-1])
    assert 0 < len(batches[-1][1].segment_ids) <= 32
    assert [segment for _, job in batches for segment in job.segment_ids] == ids
    pages = [segment.page for segment in harness.sink.segments]
    assert pages == sorted(pages)
    assert max(pages) <= 55


async def test_redelivered_parse_job_creates_no_duplicate_segments_or_embed_jobs(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, WARSAW)
    await harness.pipeline.run(parse_job(key))
    first_segments, first_published = list(harness.sink.segments), list(harness.publisher.published)
    harness.sink.segments.clear()
    harness.publisher.published.clear()

    await harness.pipeline.run(parse_job(key))
    assert harness.sink.segments == first_segments
    assert harness.publisher.published == first_published


async def test_another_version_of_the_same_document_gets_other_segment_ids(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, WARSAW)
    await harness.pipeline.run(parse_job(key, version=1))
    await harness.pipeline.run(parse_job(key, version=2))
    ids = [segment.id for segment in harness.sink.segments]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("sf__libreoffice-writer-password.pdf", PASSWORD_REQUIRED),
        ("qpdf__bad1.pdf", "the file is not a readable PDF: failed to open stream"),
        ("qpdf__deep-pages.pdf", "the file is not a readable PDF: cycle in page tree"),
        ("pdfium__no_page_count.pdf", NO_PAGES),
    ],
)
async def test_unparseable_input_is_reported_failed_and_not_retried(tmp_path: Path, name: str, reason: str) -> None:
    harness, key = await harness_for(tmp_path, PROBLEM_PDFS / name)
    result = await harness.pipeline.run(parse_job(key))
    assert (result.outcome, result.reason) == (Outcome.FAILED, reason)
    assert harness.reporter.reports[-1] == Progress(FAILED, error=reason, failed_stage="parse")
    assert harness.sink.segments == []
    assert harness.publisher.published == []


async def test_document_without_text_is_ready_with_no_chunks(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, PROBLEM_PDFS / "pdfjs__empty.pdf")
    result = await harness.pipeline.run(parse_job(key))
    assert result.outcome == Outcome.READY
    assert harness.reporter.reports == [Progress(PARSING, pages_total=1), Progress(READY, pages_total=1, pages_done=1)]
    assert harness.publisher.published == []


async def test_document_over_the_page_limit_fails_with_the_limit_in_the_reason(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, PDKIDS, ParseLimits(max_pages=50))
    result = await harness.pipeline.run(parse_job(key))
    assert result.outcome == Outcome.FAILED
    assert result.reason == "the PDF has 55 pages, more than the limit of 50"
    assert harness.sink.segments == []


async def test_missing_original_is_reported_failed(tmp_path: Path) -> None:
    harness = Harness(LocalObjectStore(tmp_path / "objects"))
    result = await harness.pipeline.run(parse_job("tenant-a/doc-1/1/gone.pdf"))
    assert (result.outcome, result.reason) == (Outcome.FAILED, MISSING_ORIGINAL)
    assert harness.reporter.reports == [Progress(FAILED, error=MISSING_ORIGINAL, failed_stage="parse")]


async def test_job_for_a_deleted_document_is_dropped_without_work(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, WARSAW)
    harness.reporter.gone = True
    result = await harness.pipeline.run(parse_job(key))
    assert result.outcome == Outcome.DROPPED
    assert harness.sink.segments == []
    assert harness.publisher.published == []


async def test_job_for_a_superseded_version_is_dropped(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, WARSAW)
    harness.reporter.version = 2
    result = await harness.pipeline.run(parse_job(key, version=1))
    assert result.outcome == Outcome.DROPPED
    assert "version 2" in result.reason
    assert harness.sink.segments == []


async def test_job_for_a_document_that_is_already_ready_is_dropped(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, WARSAW)
    harness.reporter.status = READY
    result = await harness.pipeline.run(parse_job(key))
    assert result.outcome == Outcome.DROPPED
    assert harness.publisher.published == []


async def test_failed_report_for_a_deleted_document_drops_the_job(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, PROBLEM_PDFS / "qpdf__bad1.pdf")
    harness.reporter.gone = True
    result = await harness.pipeline.run(parse_job(key))
    assert result.outcome == Outcome.DROPPED


async def test_transient_faults_raise_so_the_job_is_redelivered(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, WARSAW)
    harness.sink.fail = True
    with pytest.raises(ConnectionError):
        await harness.pipeline.run(parse_job(key))
    assert harness.publisher.published == []

    harness.sink.fail = False
    harness.reporter.fail_times = 1
    with pytest.raises(ConnectionError):
        await harness.pipeline.run(parse_job(key))
