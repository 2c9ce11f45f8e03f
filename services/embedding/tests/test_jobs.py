"""Embed jobs through real NATS JetStream, with stand-in vector_index and ingestion gRPC servers.

The stand-ins are real grpc.aio servers behind the shared bootstrap (so identity travels as metadata
exactly as in the suite); they keep segments in memory the way vector_index keeps them in Postgres.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from pdfchat.common import identity, jetstream
from pdfchat.common.grpc_server import ServiceSpec, serve
from pdfchat.common.identity import Identity
from pdfchat.common.jetstream import ConsumerSpec, JobQueues, PermanentJobError
from pdfchat.common.settings import CommonSettings
from pdfchat.embedding.jobs import EmbedJobConsumer, EmbedJobHandler, EmbedOutcome, parse_embed_job
from pdfchat.embedding.models import SentenceTransformerEmbedder
from pdfchat.v1 import (
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    ingestion_pb2,
    ingestion_pb2_grpc,
    vector_index_pb2,
    vector_index_pb2_grpc,
)
from pdfchat_tools.devstack import Stack
from pdfchat_tools.infra import free_port


def test_garbage_payload_is_a_permanent_failure() -> None:
    with pytest.raises(PermanentJobError):
        parse_embed_job(b"\xff\xff not a protobuf")


def test_job_without_tenant_is_a_permanent_failure() -> None:
    with pytest.raises(PermanentJobError, match="tenant"):
        parse_embed_job(common_pb2.EmbedJob(document_id="d1").SerializeToString())


@dataclass
class StandInVectorIndex(vector_index_pb2_grpc.VectorIndexServiceServicer):
    """Segments per tenant in memory; `unavailable` makes every call fail as a database outage would."""

    segments: dict[tuple[str, str], vector_index_pb2.Segment] = field(default_factory=dict)
    vectors: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    models: set[str] = field(default_factory=set)
    unavailable: bool = False

    def add(self, tenant: str, segment: vector_index_pb2.Segment) -> None:
        self.segments[(tenant, segment.id)] = segment

    def _tenant(self) -> str:
        if self.unavailable:
            raise ConnectionError("database down")
        return identity.require().tenant_id

    async def GetSegments(
        self, request: vector_index_pb2.GetSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> vector_index_pb2.GetSegmentsResponse:
        tenant = self._tenant()
        found = [self.segments[(tenant, i)] for i in request.segment_ids if (tenant, i) in self.segments]
        return vector_index_pb2.GetSegmentsResponse(segments=found)

    async def UpsertVectors(
        self, request: vector_index_pb2.UpsertVectorsRequest, context: grpc.aio.ServicerContext
    ) -> vector_index_pb2.UpsertVectorsResponse:
        tenant = self._tenant()
        self.models.add(request.model)
        for vector in request.vectors:
            if (tenant, vector.segment_id) in self.segments:
                self.vectors[(tenant, vector.segment_id)] = list(vector.values)
        return vector_index_pb2.UpsertVectorsResponse(upserted=len(request.vectors))

    async def GetDocumentIndexStats(
        self, request: vector_index_pb2.GetDocumentIndexStatsRequest, context: grpc.aio.ServicerContext
    ) -> vector_index_pb2.GetDocumentIndexStatsResponse:
        tenant = self._tenant()
        keys = [
            key
            for key, segment in self.segments.items()
            if key[0] == tenant and segment.document_id == request.document_id and segment.version == request.version
        ]
        return vector_index_pb2.GetDocumentIndexStatsResponse(
            segments=len(keys), embedded=sum(key in self.vectors for key in keys)
        )


@dataclass
class StandInIngestion(ingestion_pb2_grpc.IngestionServiceServicer):
    reports: list[tuple[str, ingestion_pb2.ReportProgressRequest]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def ReportProgress(
        self, request: ingestion_pb2.ReportProgressRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.ReportProgressResponse:
        self.reports.append((identity.require().tenant_id, request))
        self.changed.set()
        return ingestion_pb2.ReportProgressResponse()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(30):
            while len(self.reports) < count:
                self.changed.clear()
                await self.changed.wait()


@dataclass
class Downstream:
    index: StandInVectorIndex
    ingestion: StandInIngestion
    index_addr: str
    ingestion_addr: str


@pytest.fixture
async def downstream() -> AsyncIterator[Downstream]:
    index, ingestion = StandInVectorIndex(), StandInIngestion()
    index_port, ingestion_port = free_port(), free_port()
    stop = asyncio.Event()
    settings = CommonSettings(shutdown_grace_seconds=0.5, health_check_interval_seconds=0.2)
    servers = [
        asyncio.create_task(
            serve(
                ServiceSpec(
                    name="vector_index",
                    port=index_port,
                    register=lambda s: vector_index_pb2_grpc.add_VectorIndexServiceServicer_to_server(index, s),
                ),
                settings,
                stop,
            )
        ),
        asyncio.create_task(
            serve(
                ServiceSpec(
                    name="ingestion",
                    port=ingestion_port,
                    register=lambda s: ingestion_pb2_grpc.add_IngestionServiceServicer_to_server(ingestion, s),
                ),
                settings,
                stop,
            )
        ),
    ]
    await asyncio.sleep(0.2)
    try:
        yield Downstream(index, ingestion, f"127.0.0.1:{index_port}", f"127.0.0.1:{ingestion_port}")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*servers), timeout=10)


@pytest.fixture
async def queues(nats_url: str) -> AsyncIterator[tuple[JetStreamContext, JobQueues]]:
    job_queues = JobQueues(f"temb{uuid.uuid4().hex[:8]}")
    client: NatsClient = await jetstream.connect(nats_url, "embedding-test")
    js = client.jetstream()
    await jetstream.ensure_streams(js, job_queues)
    try:
        yield js, job_queues
    finally:
        for stream in job_queues.streams:
            await js.delete_stream(stream)
        await client.close()


def _segments(document_id: str, version: int, count: int) -> list[vector_index_pb2.Segment]:
    return [
        vector_index_pb2.Segment(
            id=f"{document_id}-v{version}-{n}",
            document_id=document_id,
            version=version,
            page=1 + n // 3,
            ordinal=n,
            text=f"Paragraph {n}: the company's revenue grew in region {n}." if n % 2 else f"第{n}段：公司的风险因素。",
        )
        for n in range(count)
    ]


def _job(tenant: str, document_id: str, version: int, segment_ids: list[str]) -> bytes:
    return common_pb2.EmbedJob(
        tenant_id=tenant, document_id=document_id, version=version, segment_ids=segment_ids, request_id="req-1"
    ).SerializeToString()


async def _consume(
    nats_url: str,
    queues: JobQueues,
    handler: EmbedJobHandler,
    stop: asyncio.Event,
    max_deliver: int = 5,
) -> asyncio.Task[None]:
    spec = ConsumerSpec(durable="embedding", subject=queues.embed_subject, kind="embed", max_deliver=max_deliver)
    consumer = EmbedJobConsumer(nats_url, queues, spec, handler)
    return asyncio.create_task(consumer.run(stop))


@pytest.mark.integration
async def test_embed_jobs_store_vectors_and_report_absolute_progress(
    nats_url: str,
    queues: tuple[JetStreamContext, JobQueues],
    downstream: Downstream,
    minilm: SentenceTransformerEmbedder,
) -> None:
    js, job_queues = queues
    segments = _segments("doc1", 2, 10)
    for segment in segments:
        downstream.index.add("acme", segment)
    handler = EmbedJobHandler(
        minilm, vector_index_addr=downstream.index_addr, ingestion_addr=downstream.ingestion_addr, max_deliver=5
    )
    ids = [segment.id for segment in segments]
    await jetstream.publish(js, job_queues.embed_subject, _job("acme", "doc1", 2, ids[:6]), msg_id="j1")
    stop = asyncio.Event()
    consumer = await _consume(nats_url, job_queues, handler, stop)
    try:
        await downstream.ingestion.wait_for(1)
        await jetstream.publish(js, job_queues.embed_subject, _job("acme", "doc1", 2, ids[6:]), msg_id="j2")
        await downstream.ingestion.wait_for(2)
    finally:
        stop.set()
        await asyncio.wait_for(consumer, timeout=15)

    assert len(downstream.index.vectors) == 10
    assert all(len(vector) == 384 for vector in downstream.index.vectors.values())
    assert downstream.index.models == {"sentence-transformers/all-MiniLM-L6-v2"}
    (tenant1, first), (tenant2, second) = downstream.ingestion.reports
    assert tenant1 == tenant2 == "acme", "the job's tenant travels to every downstream call"
    assert first.status == second.status == common_pb2.DOCUMENT_STATUS_EMBEDDING
    assert (first.document_id, first.version) == ("doc1", 2)
    assert (first.progress.chunks_done, first.progress.chunks_total) == (6, 10)
    assert (second.progress.chunks_done, second.progress.chunks_total) == (10, 10)
    info = await js.stream_info(job_queues.jobs_stream)
    assert info.state.messages == 0, "handled jobs are acked"


@pytest.mark.integration
async def test_redelivered_embed_job_reports_the_same_counts_again(
    downstream: Downstream, minilm: SentenceTransformerEmbedder
) -> None:
    segments = _segments("doc2", 1, 4)
    for segment in segments:
        downstream.index.add("acme", segment)
    handler = EmbedJobHandler(
        minilm, vector_index_addr=downstream.index_addr, ingestion_addr=downstream.ingestion_addr, max_deliver=5
    )
    job = parse_embed_job(_job("acme", "doc2", 1, [segment.id for segment in segments]))
    token = identity.bind(Identity(tenant_id="acme"))
    try:
        first = await handler.run(job)
        again = await handler.run(job)
    finally:
        identity.reset(token)
    assert first.outcome is again.outcome is EmbedOutcome.EMBEDDED
    assert (first.chunks_done, first.chunks_total) == (again.chunks_done, again.chunks_total) == (4, 4)
    assert len(downstream.index.vectors) == 4


@pytest.mark.integration
async def test_job_of_a_deleted_document_is_acked_without_effect(
    nats_url: str,
    queues: tuple[JetStreamContext, JobQueues],
    downstream: Downstream,
    minilm: SentenceTransformerEmbedder,
) -> None:
    js, job_queues = queues
    handler = EmbedJobHandler(
        minilm, vector_index_addr=downstream.index_addr, ingestion_addr=downstream.ingestion_addr, max_deliver=5
    )
    # another tenant's segments carry the same ids: they must stay invisible to this job
    for segment in _segments("gone", 1, 3):
        downstream.index.add("other-tenant", segment)
    ids = [segment.id for segment in _segments("gone", 1, 3)]
    await jetstream.publish(js, job_queues.embed_subject, _job("acme", "gone", 1, ids), msg_id="gone")
    stop = asyncio.Event()
    consumer = await _consume(nats_url, job_queues, handler, stop)
    try:
        for _ in range(200):
            if (await js.stream_info(job_queues.jobs_stream)).state.messages == 0:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the job was never acked")
    finally:
        stop.set()
        await asyncio.wait_for(consumer, timeout=15)
    assert downstream.index.vectors == {}
    assert downstream.ingestion.reports == []


@pytest.mark.integration
async def test_job_failing_on_its_last_delivery_reports_the_document_failed_and_is_dead_lettered(
    nats_url: str,
    queues: tuple[JetStreamContext, JobQueues],
    downstream: Downstream,
    minilm: SentenceTransformerEmbedder,
) -> None:
    js, job_queues = queues
    downstream.index.unavailable = True
    handler = EmbedJobHandler(
        minilm, vector_index_addr=downstream.index_addr, ingestion_addr=downstream.ingestion_addr, max_deliver=2
    )
    dead = await js.subscribe(job_queues.dlq_subject("embed"), stream=job_queues.dlq_stream)
    await jetstream.publish(js, job_queues.embed_subject, _job("acme", "doc3", 1, ["doc3-v1-0"]), msg_id="doomed")
    stop = asyncio.Event()
    consumer = await _consume(nats_url, job_queues, handler, stop, max_deliver=2)
    try:
        letter = await dead.next_msg(timeout=30)
    finally:
        stop.set()
        await asyncio.wait_for(consumer, timeout=15)
    assert letter.headers is not None
    assert "max deliveries" in letter.headers["Pdfchat-Dlq-Reason"]
    [(tenant, report)] = downstream.ingestion.reports
    assert tenant == "acme"
    assert report.status == common_pb2.DOCUMENT_STATUS_FAILED
    assert report.failed_stage == "embed"
    assert (report.document_id, report.version) == ("doc3", 1)
    assert "attempts" in report.error


@pytest.mark.integration
async def test_embed_job_fills_the_real_vector_index_so_vector_search_finds_the_passage(
    own_stack: Callable[..., Stack], nats_url: str
) -> None:
    stack = own_stack(("vector_index", "ingestion", "embedding"))
    env = stack.config.env
    tenant, document_id = f"t-{uuid.uuid4().hex[:8]}", f"doc-{uuid.uuid4().hex[:8]}"
    metadata = Identity(tenant_id=tenant).to_metadata()
    texts = [
        "The company's revenue grew by twelve percent in 2023.",
        "Heavy rain is expected in the mountains this weekend.",
        "公司的主要风险是原材料价格上涨。",
    ]
    segments = [
        vector_index_pb2.Segment(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{document_id}/1/{n}")),
            document_id=document_id,
            version=1,
            page=n + 1,
            ordinal=n,
            text=text,
        )
        for n, text in enumerate(texts)
    ]
    async with grpc.aio.insecure_channel(env["PDFCHAT_VECTOR_INDEX_ADDR"]) as channel:
        index = vector_index_pb2_grpc.VectorIndexServiceStub(channel)
        upsert = vector_index_pb2.UpsertSegmentsRequest(segments=segments)
        await index.UpsertSegments(upsert, metadata=metadata, timeout=10)

        client = await jetstream.connect(nats_url, "embedding-test")
        try:
            queues = JobQueues(env["PDFCHAT_JOBS_NAMESPACE"])
            job = common_pb2.EmbedJob(
                tenant_id=tenant, document_id=document_id, version=1, segment_ids=[s.id for s in segments]
            )
            payload = job.SerializeToString()
            await jetstream.publish(client.jetstream(), queues.embed_subject, payload, msg_id=document_id)
        finally:
            await client.close()

        stats_request = vector_index_pb2.GetDocumentIndexStatsRequest(document_id=document_id, version=1)
        for _ in range(300):
            stats = await index.GetDocumentIndexStats(stats_request, metadata=metadata, timeout=10)
            if stats.embedded == len(segments):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"segments were not embedded: {stats}")

        async with grpc.aio.insecure_channel(env["PDFCHAT_EMBEDDING_ADDR"]) as embedding_channel:
            question = await embedding_pb2_grpc.EmbeddingServiceStub(embedding_channel).Embed(
                embedding_pb2.EmbedRequest(texts=["How much did sales increase?"]), metadata=metadata, timeout=10
            )
        # searches see a document only once ingestion activates its version (when it is READY)
        await index.ActivateVersion(
            vector_index_pb2.ActivateVersionRequest(document_id=document_id, version=1), metadata=metadata, timeout=10
        )
        hits = await index.Search(
            vector_index_pb2.SearchRequest(query_vector=question.embeddings[0].values, top_k=3),
            metadata=metadata,
            timeout=10,
        )
    assert hits.hits[0].segment.id == segments[0].id
