"""The dead-letter safety net on real NATS JetStream and Postgres: a job in `<ns>.dlq.>` FAILs its
document with the stage and the reason, and leaves final documents and other versions alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from ingestion_support import Harness, tiny_pdf
from nats.js.client import JetStreamContext

from pdfchat.common.identity import Identity
from pdfchat.common.jetstream import JobQueues
from pdfchat.ingestion.dead_letters import REASON_HEADER, run_dead_letter_consumer
from pdfchat.ingestion.documents import Document, DocumentStatus, Progress, ProgressReport
from pdfchat.ingestion.library import UploadRequest
from pdfchat.ingestion.ranges import PageRange
from pdfchat.v1 import common_pb2

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

S = DocumentStatus


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest_asyncio.fixture(loop_scope="session")
async def consumer(harness: Harness, js: JetStreamContext, ingestion_jobs_namespace: str) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_dead_letter_consumer(js, JobQueues(ingestion_jobs_namespace), harness.library, stop))
    yield
    stop.set()
    await asyncio.wait_for(task, 10)


async def dead_letter(js: JetStreamContext, namespace: str, kind: str, payload: bytes, reason: str) -> None:
    await js.publish(JobQueues(namespace).dlq_subject(kind), payload, headers={REASON_HEADER: reason})


async def until(harness: Harness, document: Document, done: object, within: float = 10.0) -> Document:
    async with asyncio.timeout(within):
        while True:
            current = await harness.library.get(document.tenant_id, document.id)
            if done(current):  # type: ignore[operator]
                return current
            await asyncio.sleep(0.1)


async def upload(harness: Harness, tenant: str) -> Document:
    return (
        await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))
    ).document


@pytest.mark.usefixtures("consumer")
async def test_dead_lettered_page_range_job_fails_its_document_with_the_stage_and_reason(
    harness: Harness, js: JetStreamContext, ingestion_jobs_namespace: str, tenant: str
) -> None:
    document = await upload(harness, tenant)
    await harness.library.report_progress(tenant, document.id, ProgressReport(1, S.PARSING, Progress(pages_total=40)))
    job = common_pb2.ParseJob(
        tenant_id=tenant, document_id=document.id, version=1, page_start=11, page_end=20, pages_total=40
    )
    await dead_letter(js, ingestion_jobs_namespace, "parse", job.SerializeToString(), "max deliveries reached: boom")

    failed = await until(harness, document, lambda d: d.is_final)
    assert (failed.status, failed.failed_stage) == (S.FAILED, "parse")
    assert failed.error == "parse job (pages 11-20) failed for good: max deliveries reached: boom"


@pytest.mark.usefixtures("consumer")
async def test_dead_lettered_embed_job_fails_an_embedding_document(
    harness: Harness, js: JetStreamContext, ingestion_jobs_namespace: str, tenant: str
) -> None:
    document = await upload(harness, tenant)
    await harness.library.report_progress(
        tenant, document.id, ProgressReport(1, S.PARSING, Progress(pages_total=1), range_result=PageRange(1, 1, 3))
    )
    job = common_pb2.EmbedJob(tenant_id=tenant, document_id=document.id, version=1, segment_ids=["x"])
    await dead_letter(js, ingestion_jobs_namespace, "embed", job.SerializeToString(), "permanent: bad vectors")
    failed = await until(harness, document, lambda d: d.is_final)
    assert (failed.status, failed.failed_stage, failed.error) == (
        S.FAILED,
        "embed",
        "embed job failed for good: permanent: bad vectors",
    )


@pytest.mark.usefixtures("consumer")
async def test_dead_letters_for_final_documents_or_old_versions_change_nothing(
    harness: Harness, js: JetStreamContext, ingestion_jobs_namespace: str, tenant: str
) -> None:
    ready = await upload(harness, tenant)
    await harness.library.report_progress(
        tenant, ready.id, ProgressReport(1, S.PARSING, Progress(pages_total=1), range_result=PageRange(1, 1, 0))
    )
    reprocessed = await upload(harness, tenant)
    await harness.library.reprocess(Identity(tenant_id=tenant), reprocessed.id)
    for document in (ready, reprocessed):
        job = common_pb2.ParseJob(tenant_id=tenant, document_id=document.id, version=1)
        await dead_letter(js, ingestion_jobs_namespace, "parse", job.SerializeToString(), "late")
    await dead_letter(js, ingestion_jobs_namespace, "parse", b"\xff\xffnot a job", "garbage")
    # a marker after them: once it is recorded, the ones before it were handled too
    marker = await upload(harness, tenant)
    job = common_pb2.ParseJob(tenant_id=tenant, document_id=marker.id, version=1)
    await dead_letter(js, ingestion_jobs_namespace, "parse", job.SerializeToString(), "marker")
    await until(harness, marker, lambda d: d.is_final)

    assert (await harness.library.get(tenant, ready.id)).status == S.READY
    current = await harness.library.get(tenant, reprocessed.id)
    assert (current.status, current.version) == (S.QUEUED, 2)
