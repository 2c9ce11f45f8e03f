from pathlib import Path

import pytest

from pdfchat.common.object_store import LocalObjectStore
from pdfchat.worker_pdf.chunking import segment_id
from pdfchat.worker_pdf.extraction import NO_PAGES, PASSWORD_REQUIRED, WRONG_PASSWORD
from pdfchat.worker_pdf.pipeline import (
    FAILED,
    MISSING_ORIGINAL,
    PARSING,
    READY,
    Outcome,
    ParseLimits,
    ParsePipeline,
    Progress,
    RangeResult,
)

from ._fakes import (
    PROBLEM_PDFS,
    XQUAD_DOCS,
    RecordingParsePublisher,
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
        self.ranges = RecordingParsePublisher()
        self.pipeline = ParsePipeline(store, self.reporter, self.sink, self.publisher, self.ranges, limits)


async def harness_for(tmp_path: Path, source: Path, limits: ParseLimits = DEFAULT_LIMITS) -> tuple[Harness, str]:
    key = f"tenant-a/doc-1/1/{source.name}"
    return Harness(await store_with(tmp_path / "objects", key, source), limits), key


async def test_small_document_is_parsed_by_its_planning_job_and_reported_as_one_range(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, WARSAW)
    result = await harness.pipeline.run(parse_job(key))

    segments = harness.sink.segments
    assert result.outcome == Outcome.PARSED
    assert (result.pages, result.chunks, result.failed_pages) == (2, len(segments), ())
    assert harness.ranges.published == []
    ordinals = [segment.ordinal for segment in segments]
    assert ordinals == sorted(set(ordinals))
    assert {ordinal // 10000 for ordinal in ordinals} == {1, 2}
    assert [segment.id for segment in segments] == [segment_id("doc-1", 1, n) for n in ordinals]
    assert all(segment.page == segment.ordinal // 10000 for segment in segments)
    assert all(segment.document_id == "doc-1" and segment.version == 1 for segment in segments)
    assert all(segment.boxes for segment in segments)
    assert "Ogród Saski" in segments[0].text

    assert harness.reporter.reports == [
        Progress(PARSING, pages_total=2),
        Progress(PARSING, pages_total=2, range_result=RangeResult(1, 2, len(segments))),
    ]
    [(msg_id, embed_job)] = harness.publisher.published
    assert msg_id == "embed:doc-1:1:1-2:0"
    assert list(embed_job.segment_ids) == [segment.id for segment in segments]
    assert (embed_job.tenant_id, embed_job.document_id, embed_job.version, embed_job.request_id) == (
        "tenant-a",
        "doc-1",
        1,
        "req-1",
    )


async def test_big_document_fans_out_into_page_range_jobs_that_each_parse_their_pages(tmp_path: Path) -> None:
    limits = ParseLimits(embed_batch_size=32, range_pages=16)
    harness, key = await harness_for(tmp_path, PDKIDS, limits)
    job = parse_job(key, password="")
    planned = await harness.pipeline.run(job)

    assert (planned.outcome, planned.pages) == (Outcome.FANNED_OUT, 55)
    assert harness.sink.segments == []
    assert harness.reporter.reports == [Progress(PARSING, pages_total=55)]
    assert [msg_id for msg_id, _ in harness.ranges.published] == [
        "parse:doc-1:1:1-16",
        "parse:doc-1:1:17-32",
        "parse:doc-1:1:33-48",
        "parse:doc-1:1:49-55",
    ]
    for _, range_job in harness.ranges.published:
        assert (range_job.document_id, range_job.version, range_job.object_key) == ("doc-1", 1, key)
        assert range_job.pages_total == 55

    # replicas take the ranges in any order
    for _, range_job in reversed(harness.ranges.published):
        result = await harness.pipeline.run(range_job)
        assert result.outcome == Outcome.PARSED
        assert result.pages == range_job.page_end - range_job.page_start + 1

    segments = harness.sink.segments
    ids = [segment.id for segment in segments]
    assert len(set(ids)) == len(ids)
    assert {segment.page for segment in segments} <= set(range(1, 56))
    results = [report.range_result for report in harness.reporter.reports if report.range_result]
    assert sorted((r.page_start, r.page_end) for r in results) == [(1, 16), (17, 32), (33, 48), (49, 55)]
    assert sum(r.segments for r in results) == len(segments)
    embedded = [segment for _, embed_job in harness.publisher.published for segment in embed_job.segment_ids]
    assert sorted(embedded) == sorted(ids)
    assert all(msg_id.startswith("embed:doc-1:1:") for msg_id, _ in harness.publisher.published)
    assert len({msg_id for msg_id, _ in harness.publisher.published}) == len(harness.publisher.published)


async def test_redelivered_range_job_creates_no_duplicate_segments_or_embed_jobs(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, PDKIDS, ParseLimits(range_pages=16))
    await harness.pipeline.run(parse_job(key))
    await harness.pipeline.run(parse_job(key))  # the planning job again: the same range jobs, stored once
    assert len(harness.ranges.published) == 4
    range_job = harness.ranges.published[1][1]
    await harness.pipeline.run(range_job)
    first_segments, first_published = list(harness.sink.segments), list(harness.publisher.published)
    harness.sink.segments.clear()
    harness.publisher.published.clear()

    await harness.pipeline.run(range_job)
    assert harness.sink.segments == first_segments
    assert harness.publisher.published == first_published


async def test_redelivered_small_document_job_creates_no_duplicate_segments(tmp_path: Path) -> None:
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


async def test_encrypted_document_is_parsed_with_the_jobs_password(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, PROBLEM_PDFS / "sf__libreoffice-writer-password.pdf")
    result = await harness.pipeline.run(parse_job(key, password="openpassword"))
    assert result.outcome == Outcome.PARSED
    assert result.chunks > 0


async def test_encrypted_document_with_a_wrong_password_fails(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, PROBLEM_PDFS / "sf__libreoffice-writer-password.pdf")
    result = await harness.pipeline.run(parse_job(key, password="guess"))
    assert (result.outcome, result.reason) == (Outcome.FAILED, WRONG_PASSWORD)


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


async def test_document_without_text_reports_its_range_with_no_segments(tmp_path: Path) -> None:
    harness, key = await harness_for(tmp_path, PROBLEM_PDFS / "pdfjs__empty.pdf")
    result = await harness.pipeline.run(parse_job(key))
    assert (result.outcome, result.chunks) == (Outcome.PARSED, 0)
    assert harness.reporter.reports == [
        Progress(PARSING, pages_total=1),
        Progress(PARSING, pages_total=1, range_result=RangeResult(1, 1, 0)),
    ]
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


async def test_a_page_that_takes_too_long_has_no_text_and_the_document_goes_on(tmp_path: Path) -> None:
    from pdfchat.worker_pdf.extraction import ExtractionLimits, ReadOptions

    from .test_extraction import scanned_pdf

    source = tmp_path / "scan.pdf"
    source.write_bytes(scanned_pdf([f"Line {n} of a long scanned page." for n in range(25)], then_text_page="Text."))
    limits = ParseLimits(extraction=ExtractionLimits(page_time_limit=0.5, read=ReadOptions(ocr_dpi=600)))
    harness, key = await harness_for(tmp_path, source, limits)
    result = await harness.pipeline.run(parse_job(key))
    assert (result.outcome, result.failed_pages, result.chunks) == (Outcome.PARSED, (1,), 1)
    assert harness.sink.segments[0].page == 2
    assert harness.reporter.reports[-1].range_result == RangeResult(1, 2, 1)
