"""Unit tests of the stage state machine and list pagination helpers (no network)."""

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


def test_parsing_report_moves_a_queued_document_to_parsing_with_its_page_count() -> None:
    after = advance(document(), report(S.PARSING, pages_total=12, pages_done=3))
    assert after.status == S.PARSING
    assert after.progress == Progress(pages_total=12, pages_done=3)


def test_embedding_becomes_ready_once_every_chunk_is_embedded() -> None:
    embedding = advance(document(S.PARSING), report(S.EMBEDDING, pages_total=2, pages_done=2, chunks_total=10))
    assert embedding.status == S.EMBEDDING
    halfway = advance(embedding, report(S.EMBEDDING, chunks_done=5))
    assert halfway.status == S.EMBEDDING
    done = advance(halfway, report(S.EMBEDDING, chunks_done=10))
    assert done.status == S.READY
    assert done.progress == Progress(pages_total=2, pages_done=2, chunks_total=10, chunks_done=10)


def test_embedding_without_a_chunk_total_is_not_ready() -> None:
    assert advance(document(S.PARSING), report(S.EMBEDDING, chunks_done=3)).status == S.EMBEDDING


def test_ready_without_chunks_is_allowed_for_a_document_without_text() -> None:
    after = advance(document(S.PARSING), report(S.READY, pages_total=3, pages_done=3))
    assert after.status == S.READY
    assert after.progress.chunks_total == 0


def test_late_parsing_report_does_not_move_an_embedding_document_back_but_counts_its_pages() -> None:
    before = document(S.EMBEDDING, progress=Progress(pages_total=10, pages_done=6, chunks_total=40, chunks_done=2))
    after = advance(before, report(S.PARSING, pages_total=10, pages_done=8))
    assert after.status == S.EMBEDDING
    assert after.progress.pages_done == 8


def test_progress_counters_never_decrease_within_a_version() -> None:
    before = document(S.EMBEDDING, progress=Progress(pages_total=4, pages_done=4, chunks_total=20, chunks_done=9))
    after = advance(before, report(S.EMBEDDING, chunks_done=7))
    assert after.progress.chunks_done == 9


@pytest.mark.parametrize("final", [S.READY, S.FAILED])
@pytest.mark.parametrize("late", [S.PARSING, S.EMBEDDING, S.READY, S.FAILED])
def test_final_document_of_the_same_version_never_changes(final: DocumentStatus, late: DocumentStatus) -> None:
    before = document(final, progress=Progress(pages_total=1, pages_done=1, chunks_total=1, chunks_done=1))
    assert advance(before, report(late, pages_total=5, chunks_total=9)) == before


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
