"""The gRPC adapters against small in-process servers: what they send, and how they read the answers."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest

from pdfchat.common import grpc_client, identity
from pdfchat.v1 import (
    common_pb2,
    ingestion_pb2,
    ingestion_pb2_grpc,
    vector_index_pb2,
    vector_index_pb2_grpc,
)
from pdfchat.worker_pdf.pipeline import EMBEDDING, PARSING, DocumentGone, DocumentState, Progress
from pdfchat.worker_pdf.remote import IngestionProgressReporter, VectorIndexSegmentSink

from ._fakes import as_tenant, parse_job


@dataclass
class Ingestion(ingestion_pb2_grpc.IngestionServiceServicer):
    answer: grpc.StatusCode = grpc.StatusCode.OK
    version: int = 1
    requests: list[ingestion_pb2.ReportProgressRequest] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)

    async def ReportProgress(
        self, request: ingestion_pb2.ReportProgressRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.ReportProgressResponse:
        self.tenants.append(dict(context.invocation_metadata() or ()).get(identity.TENANT_KEY, ""))
        self.requests.append(request)
        if self.answer != grpc.StatusCode.OK:
            await context.abort(self.answer, f"answering {self.answer.name}")
        document = ingestion_pb2.Document(id=request.document_id, version=self.version, status=request.status)
        return ingestion_pb2.ReportProgressResponse(document=document)


@dataclass
class VectorIndex(vector_index_pb2_grpc.VectorIndexServiceServicer):
    segments: list[vector_index_pb2.Segment] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)

    async def UpsertSegments(
        self, request: vector_index_pb2.UpsertSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> vector_index_pb2.UpsertSegmentsResponse:
        self.tenants.append(dict(context.invocation_metadata() or ()).get(identity.TENANT_KEY, ""))
        self.segments.extend(request.segments)
        return vector_index_pb2.UpsertSegmentsResponse(upserted=len(request.segments))


@dataclass
class Servers:
    address: str
    ingestion: Ingestion
    vector_index: VectorIndex


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    ingestion, vector_index = Ingestion(), VectorIndex()
    server = grpc.aio.server()
    ingestion_pb2_grpc.add_IngestionServiceServicer_to_server(ingestion, server)
    vector_index_pb2_grpc.add_VectorIndexServiceServicer_to_server(vector_index, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Servers(f"127.0.0.1:{port}", ingestion, vector_index)
    finally:
        await grpc_client.close_all()
        await server.stop(None)


async def test_progress_report_carries_the_job_version_progress_and_bound_tenant(servers: Servers) -> None:
    reporter = IngestionProgressReporter(servers.address)
    with as_tenant("tenant-a"):
        state = await reporter.report(parse_job("k"), Progress(EMBEDDING, pages_total=3, pages_done=3, chunks_total=7))
    assert state == DocumentState(version=1, status=EMBEDDING)
    [request] = servers.ingestion.requests
    assert (request.document_id, request.version, request.status) == ("doc-1", 1, EMBEDDING)
    assert (request.progress.pages_total, request.progress.pages_done, request.progress.chunks_total) == (3, 3, 7)
    assert servers.ingestion.tenants == ["tenant-a"]


async def test_failed_report_carries_the_reason_and_stage(servers: Servers) -> None:
    reporter = IngestionProgressReporter(servers.address)
    failed = Progress(common_pb2.DOCUMENT_STATUS_FAILED, error="password required", failed_stage="parse")
    await reporter.report(parse_job("k"), failed)
    [request] = servers.ingestion.requests
    assert (request.error, request.failed_stage) == ("password required", "parse")


@pytest.mark.parametrize("code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION])
async def test_document_that_takes_no_more_reports_is_gone(servers: Servers, code: grpc.StatusCode) -> None:
    servers.ingestion.answer = code
    with pytest.raises(DocumentGone, match=code.name):
        await IngestionProgressReporter(servers.address).report(parse_job("k"), Progress(PARSING, pages_total=1))


async def test_unavailable_ingestion_raises_for_a_redelivery(servers: Servers) -> None:
    servers.ingestion.answer = grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await IngestionProgressReporter(servers.address).report(parse_job("k"), Progress(PARSING, pages_total=1))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_report_answer_names_the_version_the_document_is_at(servers: Servers) -> None:
    servers.ingestion.version = 3
    state = await IngestionProgressReporter(servers.address).report(parse_job("k"), Progress(PARSING))
    assert state == DocumentState(version=3, status=PARSING)


async def test_segments_are_upserted_with_the_bound_tenant(servers: Servers) -> None:
    segment = vector_index_pb2.Segment(
        id="s-1", document_id="doc-1", version=1, page=2, ordinal=0, text="hello", boxes=[common_pb2.BoundingBox(x1=1)]
    )
    with as_tenant("tenant-a"):
        await VectorIndexSegmentSink(servers.address).upsert([segment])
    assert servers.vector_index.segments == [segment]
    assert servers.vector_index.tenants == ["tenant-a"]
