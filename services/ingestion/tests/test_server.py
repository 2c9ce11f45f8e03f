"""Integration tests of the gRPC service: the real `python -m pdfchat.ingestion` process on real Postgres
and NATS, called over gRPC. vector_index is a recording fake served from this test process, so the
delete path is checked down to the metadata of the call it makes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from ingestion_support import CallbackReceiver, ParseJobs, tiny_pdf
from nats.js.client import JetStreamContext

from pdfchat.common.identity import TENANT_KEY, Identity
from pdfchat.common.jetstream import JobQueues
from pdfchat.v1 import (
    common_pb2,
    ingestion_pb2,
    ingestion_pb2_grpc,
    vector_index_pb2,
    vector_index_pb2_grpc,
)
from pdfchat_tools import devstack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

MAX_UPLOAD_BYTES = 1024 * 1024
Status = common_pb2.DocumentStatus


@dataclass
class RecordingVectorIndex(vector_index_pb2_grpc.VectorIndexServiceServicer):
    deletes: list[tuple[str, int, str]] = field(default_factory=list)
    activations: list[tuple[str, int, str]] = field(default_factory=list)

    async def DeleteDocumentSegments(
        self, request: vector_index_pb2.DeleteDocumentSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> vector_index_pb2.DeleteDocumentSegmentsResponse:
        tenant = dict(context.invocation_metadata() or ()).get(TENANT_KEY, "")
        self.deletes.append((request.document_id, request.keep_version, str(tenant)))
        return vector_index_pb2.DeleteDocumentSegmentsResponse(deleted=3)

    async def ActivateVersion(
        self, request: vector_index_pb2.ActivateVersionRequest, context: grpc.aio.ServicerContext
    ) -> vector_index_pb2.ActivateVersionResponse:
        tenant = dict(context.invocation_metadata() or ()).get(TENANT_KEY, "")
        self.activations.append((request.document_id, request.version, str(tenant)))
        return vector_index_pb2.ActivateVersionResponse()


@dataclass
class FakeVectorIndex:
    address: str
    servicer: RecordingVectorIndex


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def vector_index() -> AsyncIterator[FakeVectorIndex]:
    server = grpc.aio.server()
    servicer = RecordingVectorIndex()
    vector_index_pb2_grpc.add_VectorIndexServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield FakeVectorIndex(f"127.0.0.1:{port}", servicer)
    await server.stop(None)


@pytest.fixture(scope="module")
def ingestion_addr(
    stack_factory: Callable[..., devstack.Stack], vector_index: FakeVectorIndex, ingestion_jobs_namespace: str
) -> Iterator[str]:
    stack = stack_factory(
        ("ingestion",),
        extra_env={
            "PDFCHAT_VECTOR_INDEX_ADDR": vector_index.address,
            "PDFCHAT_JOBS_NAMESPACE": ingestion_jobs_namespace,
            "PDFCHAT_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        },
    )
    yield stack.config.env["PDFCHAT_INGESTION_ADDR"]
    stack.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stub(ingestion_addr: str) -> AsyncIterator[ingestion_pb2_grpc.IngestionServiceStub]:
    async with grpc.aio.insecure_channel(ingestion_addr) as channel:
        yield ingestion_pb2_grpc.IngestionServiceStub(channel)


@pytest.fixture
def caller() -> Identity:
    return Identity(tenant_id=f"tenant-{uuid.uuid4().hex[:8]}", user_id="u1")


def as_tenant(identity: Identity) -> tuple[tuple[str, str], ...]:
    return identity.to_metadata()


async def upload(
    stub: ingestion_pb2_grpc.IngestionServiceStub,
    caller: Identity,
    content: bytes,
    *,
    filename: str = "doc.pdf",
    idempotency_key: str = "",
    callback_url: str = "",
    chunk_size: int = 16 * 1024,
) -> ingestion_pb2.UploadResponse:
    async def requests() -> AsyncIterator[ingestion_pb2.UploadRequest]:
        yield ingestion_pb2.UploadRequest(
            metadata=ingestion_pb2.UploadMetadata(
                filename=filename,
                content_type="application/pdf",
                idempotency_key=idempotency_key,
                callback_url=callback_url,
            )
        )
        for start in range(0, len(content), chunk_size):
            yield ingestion_pb2.UploadRequest(chunk=content[start : start + chunk_size])

    return await stub.Upload(requests(), metadata=as_tenant(caller), timeout=30)


async def report(
    stub: ingestion_pb2_grpc.IngestionServiceStub,
    caller: Identity,
    document: ingestion_pb2.Document,
    status: int,
    range_result: tuple[int, int, int] | None = None,
    **progress: int,
) -> ingestion_pb2.Document:
    finished = None
    if range_result is not None:
        start, end, segments = range_result
        finished = ingestion_pb2.PageRangeResult(page_start=start, page_end=end, segments=segments)
    reply = await stub.ReportProgress(
        ingestion_pb2.ReportProgressRequest(
            document_id=document.id,
            version=document.version,
            status=status,  # type: ignore[arg-type]
            progress=ingestion_pb2.DocumentProgress(**progress),
            range_result=finished,
        ),
        metadata=as_tenant(Identity(tenant_id=caller.tenant_id)),
        timeout=10,
    )
    return reply.document


async def test_upload_of_a_real_pdf_is_queued_and_its_parse_job_published(
    stub: ingestion_pb2_grpc.IngestionServiceStub, caller: Identity, sample_pdf: Path, parse_jobs: ParseJobs
) -> None:
    content = sample_pdf.read_bytes()
    reply = await upload(stub, caller, content, filename=sample_pdf.name)

    document = reply.document
    assert reply.created
    assert document.status == Status.DOCUMENT_STATUS_QUEUED
    assert (document.filename, document.size_bytes, document.version) == (sample_pdf.name, len(content), 1)
    assert document.created_at.seconds > 0
    job = await parse_jobs.wait_for(document.id)
    assert (job.tenant_id, job.object_key, job.request_id) == (
        caller.tenant_id,
        f"{caller.tenant_id}/{document.id}/original.pdf",
        caller.request_id,
    )

    fetched = await stub.GetDocument(
        ingestion_pb2.GetDocumentRequest(document_id=document.id), metadata=as_tenant(caller), timeout=10
    )
    assert fetched.document == document
    listed = await stub.ListDocuments(ingestion_pb2.ListDocumentsRequest(), metadata=as_tenant(caller), timeout=10)
    assert [item.id for item in listed.documents] == [document.id]


async def test_duplicate_upload_returns_the_same_document_not_created(
    stub: ingestion_pb2_grpc.IngestionServiceStub, caller: Identity, sample_pdf: Path
) -> None:
    content = sample_pdf.read_bytes()
    first = await upload(stub, caller, content)
    second = await upload(stub, caller, content, chunk_size=4096)
    assert (second.created, second.document.id) == (False, first.document.id)


async def test_other_tenant_gets_not_found_for_the_document(
    stub: ingestion_pb2_grpc.IngestionServiceStub, caller: Identity
) -> None:
    document = (await upload(stub, caller, tiny_pdf())).document
    other = as_tenant(Identity(tenant_id=f"{caller.tenant_id}-b"))
    calls = [
        stub.GetDocument(ingestion_pb2.GetDocumentRequest(document_id=document.id), metadata=other, timeout=10),
        stub.DeleteDocument(ingestion_pb2.DeleteDocumentRequest(document_id=document.id), metadata=other, timeout=10),
        stub.ReprocessDocument(
            ingestion_pb2.ReprocessDocumentRequest(document_id=document.id), metadata=other, timeout=10
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert raised.value.details() == f"document {document.id} not found"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stub.WatchDocument(
            ingestion_pb2.WatchDocumentRequest(document_id=document.id), metadata=other, timeout=10
        ):
            pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"GIF89a not a pdf at all", "not a PDF"),
        (b"", "file is empty"),
        (b"%PDF-" + b"0" * MAX_UPLOAD_BYTES, f"file is larger than the limit of {MAX_UPLOAD_BYTES} bytes"),
    ],
    ids=["not-pdf", "empty", "too-large"],
)
async def test_invalid_upload_is_invalid_argument_with_a_readable_message(
    stub: ingestion_pb2_grpc.IngestionServiceStub, caller: Identity, content: bytes, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await upload(stub, caller, content, chunk_size=256 * 1024)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == message


async def test_upload_must_start_with_metadata(stub: ingestion_pb2_grpc.IngestionServiceStub, caller: Identity) -> None:
    async def requests() -> AsyncIterator[ingestion_pb2.UploadRequest]:
        yield ingestion_pb2.UploadRequest(chunk=tiny_pdf())

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Upload(requests(), metadata=as_tenant(caller), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata" in (raised.value.details() or "")


async def test_call_without_tenant_is_unauthenticated(stub: ingestion_pb2_grpc.IngestionServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListDocuments(ingestion_pb2.ListDocumentsRequest(), timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_progress_reports_reach_ready_and_the_watch_stream_yields_each_change(
    stub: ingestion_pb2_grpc.IngestionServiceStub, caller: Identity, vector_index: FakeVectorIndex
) -> None:
    document = (await upload(stub, caller, tiny_pdf())).document
    watch = stub.WatchDocument(
        ingestion_pb2.WatchDocumentRequest(document_id=document.id), metadata=as_tenant(caller), timeout=30
    )
    states = aiter(watch)
    first = await asyncio.wait_for(anext(states), 5)
    assert first.document.status == Status.DOCUMENT_STATUS_QUEUED

    parsing = await report(stub, caller, document, Status.DOCUMENT_STATUS_PARSING, pages_total=4)
    assert (parsing.status, parsing.pages) == (Status.DOCUMENT_STATUS_PARSING, 4)
    assert (await asyncio.wait_for(anext(states), 5)).document.status == Status.DOCUMENT_STATUS_PARSING

    half = await report(stub, caller, document, Status.DOCUMENT_STATUS_PARSING, range_result=(3, 4, 2))
    assert (half.status, half.progress.pages_done) == (Status.DOCUMENT_STATUS_PARSING, 2)
    assert (await asyncio.wait_for(anext(states), 5)).document.progress.pages_done == 2
    again = await report(stub, caller, document, Status.DOCUMENT_STATUS_PARSING, range_result=(3, 4, 2))
    assert again.progress == half.progress, "a repeated range report changes nothing"

    embedding = await report(stub, caller, document, Status.DOCUMENT_STATUS_PARSING, range_result=(1, 2, 4))
    assert embedding.status == Status.DOCUMENT_STATUS_EMBEDDING
    assert (await asyncio.wait_for(anext(states), 5)).document.status == Status.DOCUMENT_STATUS_EMBEDDING

    ready = await report(stub, caller, document, Status.DOCUMENT_STATUS_EMBEDDING, chunks_total=6, chunks_done=6)
    assert ready.status == Status.DOCUMENT_STATUS_READY
    assert ready.progress == ingestion_pb2.DocumentProgress(pages_total=4, pages_done=4, chunks_total=6, chunks_done=6)
    final = await asyncio.wait_for(anext(states), 5)
    assert final.document.status == Status.DOCUMENT_STATUS_READY
    assert (document.id, 1, caller.tenant_id) in vector_index.servicer.activations
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(states), 5)

    late = await report(stub, caller, document, Status.DOCUMENT_STATUS_PARSING, pages_done=2)
    assert late.status == Status.DOCUMENT_STATUS_READY


async def test_failure_report_records_the_error_and_stage(
    stub: ingestion_pb2_grpc.IngestionServiceStub, caller: Identity
) -> None:
    document = (await upload(stub, caller, tiny_pdf())).document
    reply = await stub.ReportProgress(
        ingestion_pb2.ReportProgressRequest(
            document_id=document.id,
            version=1,
            status=Status.DOCUMENT_STATUS_FAILED,
            error="the file is encrypted",
            failed_stage="parse",
        ),
        metadata=as_tenant(caller),
        timeout=10,
    )
    assert (reply.document.status, reply.document.error, reply.document.failed_stage) == (
        Status.DOCUMENT_STATUS_FAILED,
        "the file is encrypted",
        "parse",
    )


async def test_report_with_unspecified_status_is_invalid_argument(
    stub: ingestion_pb2_grpc.IngestionServiceStub, caller: Identity
) -> None:
    document = (await upload(stub, caller, tiny_pdf())).document
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await report(stub, caller, document, Status.DOCUMENT_STATUS_UNSPECIFIED)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_reprocess_publishes_a_new_version(
    stub: ingestion_pb2_grpc.IngestionServiceStub, caller: Identity, parse_jobs: ParseJobs
) -> None:
    document = (await upload(stub, caller, tiny_pdf())).document
    reply = await stub.ReprocessDocument(
        ingestion_pb2.ReprocessDocumentRequest(document_id=document.id), metadata=as_tenant(caller), timeout=10
    )
    assert (reply.document.version, reply.document.status) == (2, Status.DOCUMENT_STATUS_QUEUED)
    assert (await parse_jobs.wait_for(document.id, version=2)).tenant_id == caller.tenant_id


async def test_delete_removes_segments_as_the_callers_tenant_and_allows_a_fresh_upload(
    stub: ingestion_pb2_grpc.IngestionServiceStub, caller: Identity, vector_index: FakeVectorIndex
) -> None:
    content = tiny_pdf()
    document = (await upload(stub, caller, content)).document
    await stub.DeleteDocument(
        ingestion_pb2.DeleteDocumentRequest(document_id=document.id), metadata=as_tenant(caller), timeout=10
    )

    assert (document.id, 0, caller.tenant_id) in vector_index.servicer.deletes
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetDocument(
            ingestion_pb2.GetDocumentRequest(document_id=document.id), metadata=as_tenant(caller), timeout=10
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    again = await upload(stub, caller, content)
    assert again.created
    assert again.document.id != document.id


@pytest.fixture(scope="module")
def suite_addrs(stack_factory: Callable[..., devstack.Stack]) -> Iterator[dict[str, str]]:
    """ingestion with the real vector_index, on a JetStream namespace (and database) of its own: another
    ingestion's dead-letter consumer must not take its messages."""
    stack = stack_factory(
        ("vector_index", "ingestion"),
        extra_env={
            "PDFCHAT_SWEEP_DELAY_SECONDS": "1",
            "PDFCHAT_RECONCILE_INTERVAL_SECONDS": "0.3",
            "PDFCHAT_WEBHOOK_SECRET": "suite-webhook-secret",
            "PDFCHAT_CALLBACK_BACKOFF_SECONDS": "0.2",
            "PDFCHAT_CALLBACK_INTERVAL_SECONDS": "0.2",
        },
    )
    addresses = {name: stack.config.env[f"PDFCHAT_{name.upper()}_ADDR"] for name in ("vector_index", "ingestion")}
    yield {**addresses, "namespace": stack.config.env["PDFCHAT_JOBS_NAMESPACE"]}
    stack.stop()


async def test_delete_removes_the_documents_segments_from_the_real_vector_index(
    suite_addrs: dict[str, str], caller: Identity
) -> None:
    async with (
        grpc.aio.insecure_channel(suite_addrs["ingestion"]) as ingestion_channel,
        grpc.aio.insecure_channel(suite_addrs["vector_index"]) as index_channel,
    ):
        ingestion = ingestion_pb2_grpc.IngestionServiceStub(ingestion_channel)
        index = vector_index_pb2_grpc.VectorIndexServiceStub(index_channel)
        document = (await upload(ingestion, caller, tiny_pdf())).document
        segments = [
            vector_index_pb2.Segment(
                id=str(uuid.uuid5(uuid.UUID(document.id), f"1:{ordinal}")),
                document_id=document.id,
                version=1,
                page=1,
                ordinal=ordinal,
                text=f"passage {ordinal} about the Vistula river",
            )
            for ordinal in range(3)
        ]
        await index.UpsertSegments(
            vector_index_pb2.UpsertSegmentsRequest(segments=segments), metadata=as_tenant(caller), timeout=10
        )
        stats = vector_index_pb2.GetDocumentIndexStatsRequest(document_id=document.id, version=1)
        assert (await index.GetDocumentIndexStats(stats, metadata=as_tenant(caller), timeout=10)).segments == 3

        await ingestion.DeleteDocument(
            ingestion_pb2.DeleteDocumentRequest(document_id=document.id), metadata=as_tenant(caller), timeout=10
        )
        assert (await index.GetDocumentIndexStats(stats, metadata=as_tenant(caller), timeout=10)).segments == 0


def segments_of(
    document_id: str, version: int, texts: list[str], first_ordinal: int = 0
) -> list[vector_index_pb2.Segment]:
    return [
        vector_index_pb2.Segment(
            id=str(uuid.uuid5(uuid.UUID(document_id), f"{version}:{first_ordinal + index}")),
            document_id=document_id,
            version=version,
            page=1,
            ordinal=first_ordinal + index,
            text=text,
        )
        for index, text in enumerate(texts)
    ]


@dataclass
class Pair:
    ingestion: ingestion_pb2_grpc.IngestionServiceStub
    index: vector_index_pb2_grpc.VectorIndexServiceStub


@pytest_asyncio.fixture(loop_scope="session")
async def pair(suite_addrs: dict[str, str]) -> AsyncIterator[Pair]:
    async with (
        grpc.aio.insecure_channel(suite_addrs["ingestion"]) as ingestion_channel,
        grpc.aio.insecure_channel(suite_addrs["vector_index"]) as index_channel,
    ):
        yield Pair(
            ingestion_pb2_grpc.IngestionServiceStub(ingestion_channel),
            vector_index_pb2_grpc.VectorIndexServiceStub(index_channel),
        )


async def parse_and_embed(
    pair: Pair, caller: Identity, document: ingestion_pb2.Document, texts: list[str]
) -> ingestion_pb2.Document:
    """What worker_pdf and embedding do for a one-page version: segments stored, the range reported, all
    segments counted as embedded."""
    md = as_tenant(caller)
    await report(pair.ingestion, caller, document, Status.DOCUMENT_STATUS_PARSING, pages_total=1)
    segments = segments_of(document.id, document.version, texts)
    await pair.index.UpsertSegments(vector_index_pb2.UpsertSegmentsRequest(segments=segments), metadata=md, timeout=10)
    await report(pair.ingestion, caller, document, Status.DOCUMENT_STATUS_PARSING, range_result=(1, 1, len(texts)))
    return await report(
        pair.ingestion,
        caller,
        document,
        Status.DOCUMENT_STATUS_EMBEDDING,
        chunks_total=len(texts),
        chunks_done=len(texts),
    )


async def search_versions(pair: Pair, metadata: tuple[tuple[str, str], ...], document_id: str) -> list[int]:
    reply = await pair.index.Search(
        vector_index_pb2.SearchRequest(query_text="vistula river", document_ids=[document_id], top_k=50),
        metadata=metadata,
        timeout=10,
    )
    return [hit.segment.version for hit in reply.hits]


async def test_reprocess_swaps_versions_in_search_without_ever_mixing_them(pair: Pair, caller: Identity) -> None:
    md = as_tenant(caller)
    document = (await upload(pair.ingestion, caller, tiny_pdf())).document
    segments = [f"version one passage {i} on the Vistula river" for i in range(3)]
    await pair.index.UpsertSegments(
        vector_index_pb2.UpsertSegmentsRequest(segments=segments_of(document.id, 1, segments)), metadata=md, timeout=10
    )
    assert await search_versions(pair, md, document.id) == [], "not searchable before its first READY"
    ready = await parse_and_embed(pair, caller, document, segments)
    assert ready.status == Status.DOCUMENT_STATUS_READY
    assert sorted(await search_versions(pair, md, document.id)) == [1, 1, 1]
    stranger = as_tenant(Identity(tenant_id=f"{caller.tenant_id}-other"))
    assert await search_versions(pair, stranger, document.id) == [], "another tenant never sees it"

    seen: list[list[int]] = []
    stop = asyncio.Event()

    async def keep_searching() -> None:
        while not stop.is_set():
            seen.append(await search_versions(pair, md, document.id))

    searcher = asyncio.create_task(keep_searching())
    try:
        second = (
            await pair.ingestion.ReprocessDocument(
                ingestion_pb2.ReprocessDocumentRequest(document_id=document.id), metadata=md, timeout=10
            )
        ).document
        assert second.version == 2
        await asyncio.sleep(0.2)
        ready2 = await parse_and_embed(
            pair, caller, second, [f"version two passage {i} on the Vistula river" for i in range(5)]
        )
        assert ready2.status == Status.DOCUMENT_STATUS_READY
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await searcher
    assert sorted(await search_versions(pair, md, document.id)) == [2] * 5
    assert all(len(set(versions)) == 1 and len(versions) in (3, 5) for versions in seen), f"never a mix: {seen}"
    assert {versions[0] for versions in seen} == {1, 2}
    old = vector_index_pb2.GetDocumentIndexStatsRequest(document_id=document.id, version=1)
    assert (await pair.index.GetDocumentIndexStats(old, metadata=md, timeout=10)).segments == 0


async def test_delete_during_processing_leaves_no_segments_even_after_a_late_worker_write(
    pair: Pair, caller: Identity
) -> None:
    md = as_tenant(caller)
    document = (await upload(pair.ingestion, caller, tiny_pdf())).document
    await report(pair.ingestion, caller, document, Status.DOCUMENT_STATUS_PARSING, pages_total=2)
    await pair.index.UpsertSegments(
        vector_index_pb2.UpsertSegmentsRequest(segments=segments_of(document.id, 1, ["page one on the Vistula river"])),
        metadata=md,
        timeout=10,
    )
    await pair.ingestion.DeleteDocument(
        ingestion_pb2.DeleteDocumentRequest(document_id=document.id), metadata=md, timeout=10
    )
    stats = vector_index_pb2.GetDocumentIndexStatsRequest(document_id=document.id, version=1)
    assert (await pair.index.GetDocumentIndexStats(stats, metadata=md, timeout=10)).segments == 0

    # the worker was in the middle of page 2: its write lands after the delete, and its report is ignored
    late = segments_of(document.id, 1, ["page two on the Vistula river"], first_ordinal=1)
    await pair.index.UpsertSegments(vector_index_pb2.UpsertSegmentsRequest(segments=late), metadata=md, timeout=10)
    await report(pair.ingestion, caller, document, Status.DOCUMENT_STATUS_PARSING, range_result=(1, 2, 2))
    assert await search_versions(pair, md, document.id) == [], "a deleted document never answers"
    async with asyncio.timeout(15):
        while (await pair.index.GetDocumentIndexStats(stats, metadata=md, timeout=10)).segments:  # noqa: ASYNC110 - polls another process
            await asyncio.sleep(0.2)


async def test_ready_outcome_is_posted_to_the_callback_url_signed_with_the_configured_secret(
    pair: Pair, caller: Identity
) -> None:
    receiver = CallbackReceiver([503, 200])
    try:
        document = (await upload(pair.ingestion, caller, tiny_pdf(), callback_url=receiver.url)).document
        await parse_and_embed(pair, caller, document, ["a passage on the Vistula river"])
        async with asyncio.timeout(15):
            while len(receiver.requests) < 2:  # noqa: ASYNC110 - the receiver runs in another thread
                await asyncio.sleep(0.1)
    finally:
        receiver.close()
    body = receiver.requests[1].body
    expected = "sha256=" + hmac.new(b"suite-webhook-secret", body, hashlib.sha256).hexdigest()
    assert receiver.requests[1].headers["x-pdfchat-signature"] == expected
    assert json.loads(body)["status"] == "READY"


async def test_dead_lettered_job_fails_the_document_in_the_running_service(
    pair: Pair, suite_addrs: dict[str, str], caller: Identity, js: JetStreamContext
) -> None:
    document = (await upload(pair.ingestion, caller, tiny_pdf())).document
    job = common_pb2.ParseJob(tenant_id=caller.tenant_id, document_id=document.id, version=1)
    await js.publish(
        JobQueues(suite_addrs["namespace"]).dlq_subject("parse"),
        job.SerializeToString(),
        headers={"Pdfchat-Dlq-Reason": "max deliveries reached: worker killed"},
    )
    async with asyncio.timeout(15):
        while True:
            current = (
                await pair.ingestion.GetDocument(
                    ingestion_pb2.GetDocumentRequest(document_id=document.id), metadata=as_tenant(caller), timeout=10
                )
            ).document
            if current.status == Status.DOCUMENT_STATUS_FAILED:
                break
            await asyncio.sleep(0.1)
    assert current.failed_stage == "parse"
    assert "worker killed" in current.error


async def test_upload_with_a_bad_callback_url_is_invalid_argument(pair: Pair, caller: Identity) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await upload(pair.ingestion, caller, tiny_pdf(), callback_url="file:///etc/passwd")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
