"""Unit tests of the stage state machine (with page-range accounting) and list pagination helpers (no network)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pdfchat.common.errors import InvalidArgument
from pdfchat.ingestion.documents import (
    Document,
    DocumentStatus,
    Progress,
    ProgressReport,
    advance,
    decode_page_token,
    encode_page_token,
    page_size_of,
)
from pdfchat.ingestion.ranges import PageRange

NOW = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
S = DocumentStatus
NO_PROGRESS = Progress()


def document(
    status: DocumentStatus = S.QUEUED, version: int = 1, progress: Progress = NO_PROGRESS, **kw: object
) -> Document:
    values: dict[str, object] = {
        "id": "d1",
        "tenant_id": "t1",
        "user_id": "u1",
        "filename": "a.pdf",
        "content_type": "application/pdf",
        "size_bytes": 10,
        "sha256": "00",
        "object_key": "t1/d1/original.pdf",
        "status": status,
        "version": version,
        "progress": progress,
        "error": "",
        "failed_stage": "",
        "idempotency_key": None,
        "callback_url": "",
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(kw)
    return Document(**values)  # type: ignore[arg-type]


def report(status: DocumentStatus, version: int = 1, **progress: int) -> ProgressReport:
    return ProgressReport(version=version, status=status, progress=Progress(**progress))


def ranges(*spans: tuple[int, int, int]) -> list[PageRange]:
    return [PageRange(start, end, segments) for start, end, segments in spans]


def test_parsing_report_moves_a_queued_document_to_parsing_with_its_page_count() -> None:
    after = advance(document(), report(S.PARSING, pages_total=12, pages_done=3))
    assert after.status == S.PARSING
    assert after.progress == Progress(pages_total=12), "pages done come from finished ranges, not from claims"


def test_pages_done_are_the_pages_the_finished_ranges_cover() -> None:
    planned = document(S.PARSING, progress=Progress(pages_total=10))
    after = advance(planned, report(S.PARSING), ranges((1, 4, 7), (9, 10, 2)))
    assert after.status == S.PARSING
    assert after.progress == Progress(pages_total=10, pages_done=6, chunks_total=9)


def test_parsing_completes_when_the_ranges_cover_every_page_and_then_embedding_decides() -> None:
    planned = document(S.PARSING, progress=Progress(pages_total=8))
    parsed = advance(planned, report(S.PARSING), ranges((1, 4, 6), (5, 8, 4)))
    assert parsed.status == S.EMBEDDING
    assert parsed.progress == Progress(pages_total=8, pages_done=8, chunks_total=10)
    halfway = advance(parsed, report(S.EMBEDDING, chunks_total=10, chunks_done=5), ranges((1, 4, 6), (5, 8, 4)))
    assert halfway.status == S.EMBEDDING
    done = advance(halfway, report(S.EMBEDDING, chunks_total=10, chunks_done=10), ranges((1, 4, 6), (5, 8, 4)))
    assert done.status == S.READY


def test_embedding_every_segment_stored_so_far_is_not_ready_while_pages_are_still_parsing() -> None:
    # embedding's chunks_total is the count stored so far: 6 of 6 embedded while pages 5-8 are unparsed
    planned = document(S.PARSING, progress=Progress(pages_total=8))
    after = advance(planned, report(S.EMBEDDING, chunks_total=6, chunks_done=6), ranges((1, 4, 6)))
    assert after.status == S.PARSING
    assert after.progress == Progress(pages_total=8, pages_done=4, chunks_total=6, chunks_done=6)
    last = advance(after, report(S.PARSING), ranges((1, 4, 6), (5, 8, 3)))
    assert (last.status, last.progress.chunks_total) == (S.EMBEDDING, 9)


def test_embedding_that_finished_before_the_last_range_makes_the_document_ready_with_that_range() -> None:
    before = document(S.PARSING, progress=Progress(pages_total=4, pages_done=2, chunks_total=5, chunks_done=5))
    after = advance(before, report(S.PARSING), ranges((1, 2, 3), (3, 4, 2)))
    assert after.status == S.READY
    assert after.progress == Progress(pages_total=4, pages_done=4, chunks_total=5, chunks_done=5)


def test_ranges_without_segments_make_a_document_without_text_ready() -> None:
    planned = document(S.PARSING, progress=Progress(pages_total=3))
    after = advance(planned, report(S.PARSING), ranges((1, 3, 0)))
    assert after.status == S.READY
    assert after.progress == Progress(pages_total=3, pages_done=3)


def test_a_claimed_ready_does_not_make_a_document_ready_before_its_pages_are_parsed() -> None:
    planned = document(S.PARSING, progress=Progress(pages_total=3))
    assert advance(planned, report(S.READY, chunks_total=1, chunks_done=1), ranges((1, 1, 1))).status == S.PARSING


def test_the_page_count_is_the_first_one_reported() -> None:
    planned = document(S.PARSING, progress=Progress(pages_total=3))
    after = advance(planned, report(S.PARSING, pages_total=7), ranges((1, 3, 2)))
    assert (after.progress.pages_total, after.status) == (3, S.EMBEDDING)


def test_late_parsing_report_does_not_move_an_embedding_document_back() -> None:
    before = document(S.EMBEDDING, progress=Progress(pages_total=2, pages_done=2, chunks_total=4, chunks_done=1))
    after = advance(before, report(S.PARSING, pages_total=2), ranges((1, 2, 4)))
    assert after.status == S.EMBEDDING


def test_progress_counters_never_decrease_within_a_version() -> None:
    before = document(S.EMBEDDING, progress=Progress(pages_total=4, pages_done=4, chunks_total=20, chunks_done=9))
    after = advance(before, report(S.EMBEDDING, chunks_done=7), ranges((1, 4, 20)))
    assert after.progress.chunks_done == 9


@pytest.mark.parametrize("final", [S.READY, S.FAILED])
@pytest.mark.parametrize("late", [S.PARSING, S.EMBEDDING, S.READY, S.FAILED])
def test_final_document_of_the_same_version_never_changes(final: DocumentStatus, late: DocumentStatus) -> None:
    before = document(final, progress=Progress(pages_total=1, pages_done=1, chunks_total=1, chunks_done=1))
    assert advance(before, report(late, pages_total=5, chunks_total=9), ranges((1, 1, 9))) == before


def test_report_for_another_version_is_ignored() -> None:
    before = document(S.QUEUED, version=2)
    assert advance(before, report(S.PARSING, version=1, pages_total=5)) == before
    assert advance(before, report(S.FAILED, version=3)) == before


def test_report_for_a_deleted_document_is_ignored() -> None:
    before = document(S.PARSING, deleted_at=NOW)
    assert advance(before, report(S.EMBEDDING, chunks_total=3)) == before


def test_failure_stores_the_error_and_the_stage() -> None:
    failure = ProgressReport(version=1, status=S.FAILED, error="  page 3 cannot be decoded ", failed_stage="parse")
    after = advance(document(S.PARSING), failure)
    assert (after.status, after.error, after.failed_stage) == (S.FAILED, "page 3 cannot be decoded", "parse")


def test_failure_without_a_message_gets_a_readable_one() -> None:
    assert advance(document(S.EMBEDDING), report(S.FAILED)).error == "processing failed"


def test_queued_cannot_be_reported() -> None:
    with pytest.raises(InvalidArgument, match="cannot set status QUEUED"):
        advance(document(S.PARSING), report(S.QUEUED))


def test_page_token_round_trips_created_at_and_id() -> None:
    token = encode_page_token(document())
    assert decode_page_token(token) == (NOW, "d1")


@pytest.mark.parametrize("token", ["???", "bm90IGpzb24", "WzFd"])
def test_page_token_not_made_here_is_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument, match="page_token"):
        decode_page_token(token)


@pytest.mark.parametrize(("requested", "expected"), [(0, 50), (1, 1), (200, 200), (201, 200), (10_000, 200)])
def test_page_size_defaults_to_50_and_is_capped_at_200(requested: int, expected: int) -> None:
    assert page_size_of(requested) == expected


def test_negative_page_size_is_invalid() -> None:
    with pytest.raises(InvalidArgument):
        page_size_of(-1)
