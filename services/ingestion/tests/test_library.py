"""Integration tests of the document library against real PostgreSQL and NATS JetStream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import asyncpg
import pytest
from ingestion_support import Harness, ParseJobs, tiny_pdf
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from pdfchat.common.errors import InvalidArgument, NotFound, PayloadTooLarge
from pdfchat.common.events import DocumentChanged
from pdfchat.common.identity import Identity
from pdfchat.common.jetstream import JobQueues
from pdfchat.ingestion.documents import Document, DocumentStatus, Progress, ProgressReport
from pdfchat.ingestion.library import DocumentLibrary, Lifecycle, UploadRequest
from pdfchat.ingestion.passwords import PasswordBox
from pdfchat.ingestion.ranges import PageRange
from pdfchat.ingestion.watch import DocumentChanges

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

S = DocumentStatus


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def chunked(content: bytes, size: int = 64 * 1024) -> Iterable[bytes]:
    return [content[start : start + size] for start in range(0, len(content), size)]


async def test_upload_stores_the_original_queues_the_document_and_publishes_a_parse_job(
    harness: Harness, parse_jobs: ParseJobs, tenant: str, sample_pdf: Path
) -> None:
    caller = Identity(tenant_id=tenant, user_id="u1")
    content = sample_pdf.read_bytes()
    result = await harness.library.upload(caller, UploadRequest(filename="Warsaw.pdf"), stream(*chunked(content)))

    document = result.document
    assert result.created
    assert (document.status, document.version, document.size_bytes) == (S.QUEUED, 1, len(content))
    assert document.object_key == f"{tenant}/{document.id}/original.pdf"
    assert await harness.store.get(document.object_key) == content
    job = await parse_jobs.wait_for(document.id)
    assert (job.tenant_id, job.object_key, job.filename, job.request_id) == (
        tenant,
        document.object_key,
        "Warsaw.pdf",
        caller.request_id,
    )


async def test_duplicate_upload_returns_the_existing_document(harness: Harness, tenant: str) -> None:
    caller = Identity(tenant_id=tenant)
    content = tiny_pdf()
    first = await harness.library.upload(caller, UploadRequest(filename="a.pdf"), stream(content))
    second = await harness.library.upload(caller, UploadRequest(filename="b.pdf"), stream(content))
    assert (second.created, second.document.id) == (False, first.document.id)


async def test_same_file_for_another_tenant_is_a_separate_document(harness: Harness, tenant: str) -> None:
    content = tiny_pdf()
    mine = await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(content))
    theirs = await harness.library.upload(Identity(tenant_id=f"{tenant}-b"), UploadRequest("a.pdf"), stream(content))
    assert theirs.created
    assert theirs.document.id != mine.document.id


async def test_retry_with_the_same_idempotency_key_returns_the_document_it_created(
    harness: Harness, tenant: str
) -> None:
    caller = Identity(tenant_id=tenant)
    first = await harness.library.upload(caller, UploadRequest("a.pdf", idempotency_key="k1"), stream(tiny_pdf()))
    retry = await harness.library.upload(caller, UploadRequest("a.pdf", idempotency_key="k1"), stream(tiny_pdf()))
    assert (retry.created, retry.document.id) == (False, first.document.id)


async def test_concurrent_identical_uploads_create_one_document(harness: Harness, tenant: str) -> None:
    caller = Identity(tenant_id=tenant)
    content = tiny_pdf()
    results = await asyncio.gather(
        *(harness.library.upload(caller, UploadRequest("a.pdf"), stream(content)) for _ in range(5))
    )
    assert len({result.document.id for result in results}) == 1
    assert sum(result.created for result in results) == 1
    assert len((await harness.library.list_documents(tenant)).documents) == 1


async def test_invalid_uploads_store_nothing(harness: Harness, tenant: str, tmp_path: Path) -> None:
    caller = Identity(tenant_id=tenant)
    with pytest.raises(InvalidArgument, match="not a PDF"):
        await harness.library.upload(caller, UploadRequest("a.txt"), stream(b"just text"))
    with pytest.raises(InvalidArgument, match="file is empty"):
        await harness.library.upload(caller, UploadRequest("a.pdf"), stream())
    with pytest.raises(PayloadTooLarge, match="larger than the limit of 1048576 bytes"):
        await harness.library.upload(caller, UploadRequest("a.pdf"), stream(b"%PDF-", b"x" * 1024 * 1024))
    assert (await harness.library.list_documents(tenant)).documents == []
    assert list((tmp_path / "spool").iterdir()) == []


async def test_another_tenants_document_is_not_found(harness: Harness, tenant: str) -> None:
    mine = await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))
    other = f"{tenant}-other"
    with pytest.raises(NotFound, match=f"document {mine.document.id} not found"):
        await harness.library.get(other, mine.document.id)
    with pytest.raises(NotFound):
        await harness.library.delete(other, mine.document.id)
    with pytest.raises(NotFound):
        await harness.library.reprocess(Identity(tenant_id=other), mine.document.id)
    with pytest.raises(NotFound):
        await harness.library.report_progress(other, mine.document.id, ProgressReport(1, S.PARSING))
    assert (await harness.library.list_documents(other)).documents == []
    assert (await harness.library.get(tenant, mine.document.id)).status == S.QUEUED


async def test_list_is_newest_first_and_pages_with_a_token(harness: Harness, tenant: str) -> None:
    caller = Identity(tenant_id=tenant)
    created = [
        (await harness.library.upload(caller, UploadRequest(f"{index}.pdf"), stream(tiny_pdf()))).document.id
        for index in range(5)
    ]
    seen: list[str] = []
    token = ""
    for _ in range(3):
        page = await harness.library.list_documents(tenant, page_size=2, page_token=token)
        seen += [document.id for document in page.documents]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(created))
    assert token == ""


async def test_deleted_document_is_gone_its_original_and_segments_removed_and_can_be_uploaded_again(
    harness: Harness, tenant: str
) -> None:
    caller = Identity(tenant_id=tenant)
    content = tiny_pdf()
    first = (await harness.library.upload(caller, UploadRequest("a.pdf"), stream(content))).document
    await harness.library.delete(tenant, first.id)

    with pytest.raises(NotFound):
        await harness.library.get(tenant, first.id)
    with pytest.raises(NotFound):
        await harness.library.delete(tenant, first.id)
    assert not await harness.store.exists(first.object_key)
    assert harness.segments.calls == [(first.id, 0)]
    again = await harness.library.upload(caller, UploadRequest("a.pdf"), stream(content))
    assert again.created
    assert again.document.id != first.id


async def test_delete_announces_the_change_so_cached_answers_are_dropped(
    harness: Harness, js: JetStreamContext, ingestion_jobs_namespace: str, tenant: str
) -> None:
    queues = JobQueues(ingestion_jobs_namespace)
    events = await js.subscribe(
        queues.document_events_subject, stream=queues.events_stream, deliver_policy=DeliverPolicy.NEW
    )
    document = (
        await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))
    ).document
    await harness.library.delete(tenant, document.id)

    while True:
        event = DocumentChanged.parse((await events.next_msg(timeout=10)).data)
        if event.document_id == document.id:
            break
    assert event == DocumentChanged(tenant, document.id, "deleted")
    await events.unsubscribe()


async def test_failed_segment_clean_up_is_retried_by_the_reconciler(harness: Harness, tenant: str) -> None:
    document = (
        await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))
    ).document
    harness.segments.failing = True
    await harness.library.delete(tenant, document.id)
    with pytest.raises(NotFound):
        await harness.library.get(tenant, document.id)

    harness.segments.failing = False
    await harness.library.reconcile(older_than_seconds=0)
    assert (document.id, 0) in harness.segments.calls
    calls = len(harness.segments.calls)
    await harness.library.reconcile(older_than_seconds=0)
    assert len(harness.segments.calls) == calls, "a purged document is not purged again"


async def test_parse_job_lost_after_the_commit_is_republished_by_the_reconciler(
    harness: Harness, parse_jobs: ParseJobs, tenant: str
) -> None:
    harness.publisher.failing = True
    document = (
        await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))
    ).document
    assert document.status == S.QUEUED
    assert await parse_jobs.count_for(document.id) == 0

    harness.publisher.failing = False
    await harness.library.reconcile(older_than_seconds=3600)
    assert await parse_jobs.count_for(document.id) == 0, "too recent to be considered stuck"
    await harness.library.reconcile(older_than_seconds=0)
    job = await parse_jobs.wait_for(document.id)
    assert job.version == 1
    await harness.library.reconcile(older_than_seconds=0)
    assert await parse_jobs.count_for(document.id) == 1, "a published job is not published again"


async def test_reprocess_starts_a_new_version_and_ignores_reports_of_the_old_one(
    harness: Harness, parse_jobs: ParseJobs, tenant: str
) -> None:
    caller = Identity(tenant_id=tenant)
    document = (await harness.library.upload(caller, UploadRequest("a.pdf"), stream(tiny_pdf()))).document
    await harness.library.report_progress(tenant, document.id, ProgressReport(1, S.FAILED, error="boom"))

    again = await harness.library.reprocess(caller, document.id)
    assert (again.version, again.status, again.error, again.progress) == (2, S.QUEUED, "", Progress())
    assert (await parse_jobs.wait_for(document.id, version=2)).version == 2
    stale = await harness.library.report_progress(tenant, document.id, ProgressReport(1, S.PARSING))
    assert (stale.status, stale.version) == (S.QUEUED, 2)

    # version 2 has one page without text: READY as soon as its range is in
    ready = await harness.library.report_progress(
        tenant, document.id, ProgressReport(2, S.PARSING, Progress(pages_total=1), range_result=PageRange(1, 1, 0))
    )
    assert ready.status == S.READY
    assert harness.segments.activations == [(document.id, 2)], "the READY version is swapped in"
    assert harness.segments.calls == [(document.id, 2)], "segments of older versions are dropped once READY"


async def test_progress_reports_move_the_document_to_ready(harness: Harness, tenant: str) -> None:
    document = (
        await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))
    ).document
    steps = [
        ProgressReport(1, S.PARSING, Progress(pages_total=3)),
        ProgressReport(1, S.PARSING, Progress(pages_total=3), range_result=PageRange(1, 3, 4)),
        ProgressReport(1, S.EMBEDDING, Progress(chunks_total=4, chunks_done=4)),
    ]
    statuses = [(await harness.library.report_progress(tenant, document.id, step)).status for step in steps]
    assert statuses == [S.PARSING, S.EMBEDDING, S.READY]
    assert harness.segments.activations == [(document.id, 1)], "a first version answers once READY"
    late = await harness.library.report_progress(tenant, document.id, ProgressReport(1, S.PARSING))
    assert late.status == S.READY


async def test_progress_report_for_a_deleted_document_returns_it_unchanged(harness: Harness, tenant: str) -> None:
    document = (
        await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))
    ).document
    await harness.library.delete(tenant, document.id)
    after = await harness.library.report_progress(tenant, document.id, ProgressReport(1, S.PARSING))
    assert after.status == S.QUEUED


async def test_watch_yields_the_current_state_then_each_change_until_ready(harness: Harness, tenant: str) -> None:
    document = (
        await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))
    ).document
    states = harness.library.watch(tenant, document.id)
    first = await anext(states)
    received = [(first.status, first.progress.pages_done, first.progress.chunks_done)]
    for step in (
        ProgressReport(1, S.PARSING, Progress(pages_total=2)),
        ProgressReport(1, S.PARSING, range_result=PageRange(1, 1, 1)),
        ProgressReport(1, S.PARSING, range_result=PageRange(2, 2, 1)),
        ProgressReport(1, S.EMBEDDING, Progress(chunks_total=2, chunks_done=1)),
        ProgressReport(1, S.EMBEDDING, Progress(chunks_total=2, chunks_done=2)),
    ):
        next_state = asyncio.ensure_future(anext(states))
        await harness.library.report_progress(tenant, document.id, step)
        # The harness resyncs only every 30 s: a change seen within 3 s was pushed.
        state = await asyncio.wait_for(next_state, 3)
        received.append((state.status, state.progress.pages_done, state.progress.chunks_done))
    assert received == [
        (S.QUEUED, 0, 0),
        (S.PARSING, 0, 0),
        (S.PARSING, 1, 0),
        (S.EMBEDDING, 2, 0),
        (S.EMBEDDING, 2, 1),
        (S.READY, 2, 2),
    ]
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(states), 3)


async def test_watch_of_a_document_deleted_meanwhile_ends_with_not_found(harness: Harness, tenant: str) -> None:
    document = (
        await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))
    ).document
    states = harness.library.watch(tenant, document.id)
    assert (await anext(states)).status == S.QUEUED
    await harness.library.delete(tenant, document.id)
    with pytest.raises(NotFound):
        await asyncio.wait_for(anext(states), 5)


async def test_watch_of_another_tenants_document_is_not_found(harness: Harness, tenant: str) -> None:
    document = (
        await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))
    ).document
    with pytest.raises(NotFound):
        await anext(harness.library.watch(f"{tenant}-other", document.id))


async def test_duplicate_and_out_of_order_range_reports_count_each_page_once_and_reach_ready(
    harness: Harness, pool: asyncpg.Pool, tenant: str
) -> None:
    document = (
        await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))
    ).document

    async def range_done(start: int, end: int, segments: int, pages_total: int = 12) -> Document:
        report = ProgressReport(
            1, S.PARSING, Progress(pages_total=pages_total), range_result=PageRange(start, end, segments)
        )
        return await harness.library.report_progress(tenant, document.id, report)

    # the last range arrives first, before even the planning report; then a redelivery of it
    first = await range_done(9, 12, 2, pages_total=0)
    assert (first.status, first.progress.pages_done) == (S.PARSING, 4)
    planned = await harness.library.report_progress(
        tenant, document.id, ProgressReport(1, S.PARSING, Progress(pages_total=12))
    )
    assert planned.progress == Progress(pages_total=12, pages_done=4, chunks_total=2)
    assert (await range_done(9, 12, 2)).progress.pages_done == 4
    # embedding has embedded all it has seen so far: not READY, pages 1-8 are not parsed yet
    early = await harness.library.report_progress(
        tenant, document.id, ProgressReport(1, S.EMBEDDING, Progress(chunks_total=2, chunks_done=2))
    )
    assert early.status == S.PARSING
    assert (await range_done(5, 8, 3)).progress.pages_done == 8
    assert (await range_done(5, 8, 3)).progress == Progress(pages_total=12, pages_done=8, chunks_total=5, chunks_done=2)
    parsed = await range_done(1, 4, 4)
    assert (parsed.status, parsed.progress) == (S.EMBEDDING, Progress(12, 12, 9, 2))
    ready = await harness.library.report_progress(
        tenant, document.id, ProgressReport(1, S.EMBEDDING, Progress(chunks_total=9, chunks_done=9))
    )
    assert ready.status == S.READY
    rows = await pool.fetchval(
        "SELECT count(*) FROM ingestion.page_ranges WHERE document_id = $1 AND version = 1", document.id
    )
    assert rows == 3


async def test_page_range_outside_the_pages_is_invalid(harness: Harness, tenant: str) -> None:
    document = (
        await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))
    ).document
    with pytest.raises(InvalidArgument, match=r"page range 0\.\.3"):
        await harness.library.report_progress(
            tenant, document.id, ProgressReport(1, S.PARSING, range_result=PageRange(0, 3, 1))
        )


async def test_pdf_over_the_page_limit_is_refused_before_anything_is_stored(
    harness: Harness, changes: DocumentChanges, tenant: str, sample_pdf: Path, tmp_path: Path
) -> None:
    library = DocumentLibrary(
        harness.repository,
        harness.store,
        harness.publisher,
        harness.segments,
        changes,
        max_upload_bytes=1024 * 1024,
        max_upload_pages=1,
    )
    with pytest.raises(PayloadTooLarge, match="more than the limit of 1"):
        await library.upload(Identity(tenant_id=tenant), UploadRequest("long.pdf"), stream(sample_pdf.read_bytes()))
    assert (await library.list_documents(tenant)).documents == []
    assert not [path for path in (tmp_path / "objects").rglob("*") if path.is_file()]


async def test_stuck_document_is_republished_then_failed_with_the_stage_after_the_last_attempt(
    harness: Harness, changes: DocumentChanges, parse_jobs: ParseJobs, tenant: str
) -> None:
    library = DocumentLibrary(
        harness.repository,
        harness.store,
        harness.publisher,
        harness.segments,
        changes,
        max_upload_bytes=1024 * 1024,
        lifecycle=Lifecycle(stuck_after_seconds=0.3, max_parse_attempts=2, sweep_delay_seconds=3600),
    )
    document = (await library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))).document
    await library.report_progress(tenant, document.id, ProgressReport(1, S.PARSING, Progress(pages_total=3)))
    await parse_jobs.wait_for(document.id)

    async with asyncio.timeout(20):
        while (await library.get(tenant, document.id)).parse_attempts < 2:
            await asyncio.sleep(0.35)
            await library.reconcile(older_than_seconds=3600)
    assert await parse_jobs.count_for(document.id) == 2, "published again once, as a new attempt"
    assert (await library.get(tenant, document.id)).status == S.PARSING

    async with asyncio.timeout(20):
        while not (current := await library.get(tenant, document.id)).is_final:
            await asyncio.sleep(0.35)
            await library.reconcile(older_than_seconds=3600)
    assert (current.status, current.failed_stage) == (S.FAILED, "parse")
    assert current.error.startswith("stuck in PARSING with no progress for 0.3 s after 2 attempt(s)")
    assert await parse_jobs.count_for(document.id) == 2, "no publish beyond the last attempt"


async def test_upload_password_travels_in_the_parse_job_and_is_stored_only_encrypted(
    harness: Harness, changes: DocumentChanges, parse_jobs: ParseJobs, pool: asyncpg.Pool, tenant: str
) -> None:
    library = DocumentLibrary(
        harness.repository,
        harness.store,
        harness.publisher,
        harness.segments,
        changes,
        max_upload_bytes=1024 * 1024,
        passwords=PasswordBox("test-key"),
    )
    harness.publisher.failing = True  # the first publish is lost: the reconciler's must carry the password
    upload = UploadRequest("secret.pdf", password="hunter2-密码")
    document = (await library.upload(Identity(tenant_id=tenant), upload, stream(tiny_pdf()))).document
    stored = await pool.fetchrow("SELECT * FROM ingestion.documents WHERE id = $1", document.id)
    assert "hunter2" not in " ".join(str(value) for value in stored.values())
    assert stored["password_encrypted"]

    harness.publisher.failing = False
    await library.reconcile(older_than_seconds=0)
    job = await parse_jobs.wait_for(document.id)
    assert job.password == "hunter2-密码"
    assert (job.page_start, job.page_end) == (0, 0), "the planning job"

    again = await library.reprocess(Identity(tenant_id=tenant), document.id)
    assert (await parse_jobs.wait_for(document.id, version=again.version)).password == "hunter2-密码"
