"""Embed jobs: vectors for the segments worker_pdf stored, then the document's progress to ingestion.

worker_pdf stores a document version's segments in vector_index and publishes `EmbedJob`s on
`<ns>.jobs.embed`, each naming a batch of segment ids. For one job this module reads the segments'
texts back (GetSegments), embeds them as passages, stores the vectors (UpsertVectors), reads the
document's counts (GetDocumentIndexStats) and reports them to ingestion as EMBEDDING progress;
ingestion marks the document READY once every segment has its vector.

Handling is idempotent, so JetStream's at-least-once delivery is harmless: vectors are upserted by
segment id, and progress is reported as absolute counts read back from vector_index, never as
increments, so a redelivered job reports the same numbers again.

A document deleted (or reprocessed into a new version) while its jobs wait leaves them nothing to do:
its segments are gone, or a downstream call answers NOT_FOUND / FAILED_PRECONDITION; such a job is
acked without effect. A job that can never succeed, or that fails on its last delivery, reports the
document FAILED (stage `embed`) before it goes to the dead-letter stream, so no document waits in
EMBEDDING forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from pdfchat.common import grpc_client, identity, jetstream
from pdfchat.common.errors import InvalidArgument, Unavailable
from pdfchat.common.identity import Identity
from pdfchat.common.jetstream import ConsumerSpec, JobQueues, PermanentJobError
from pdfchat.embedding.models import Embedder, EmbedKind
from pdfchat.v1 import common_pb2, ingestion_pb2, ingestion_pb2_grpc, vector_index_pb2, vector_index_pb2_grpc

log = logging.getLogger(__name__)

# Downstream answers that mean the document went away or moved on to a new version: nothing left to do.
_GONE_CODES = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}


class EmbedOutcome(enum.Enum):
    EMBEDDED = "embedded"
    DOCUMENT_GONE = "document_gone"


@dataclass(frozen=True)
class EmbedResult:
    outcome: EmbedOutcome
    embedded: int = 0
    """Vectors stored by this job."""
    chunks_total: int = 0
    chunks_done: int = 0


def parse_embed_job(data: bytes) -> common_pb2.EmbedJob:
    """The job in a message; PermanentJobError for a payload that can never be handled."""
    try:
        job = common_pb2.EmbedJob.FromString(data)
    except DecodeError as exc:
        raise PermanentJobError(f"not an EmbedJob: {exc}") from exc
    if not job.tenant_id or not job.document_id:
        raise PermanentJobError("embed job without tenant_id or document_id")
    return job


class EmbedJobHandler:
    """Handles one embed job message (see the module docstring); the JetStream loop acks when it returns."""

    def __init__(self, embedder: Embedder, *, vector_index_addr: str, ingestion_addr: str, max_deliver: int) -> None:
        self._embedder = embedder
        self._vector_index_addr = vector_index_addr
        self._ingestion_addr = ingestion_addr
        self._max_deliver = max_deliver

    async def __call__(self, message: Msg) -> None:
        job = parse_embed_job(message.data)
        token = identity.bind(Identity(tenant_id=job.tenant_id, request_id=job.request_id or uuid.uuid4().hex))
        try:
            result = await self.run(job)
            log.info(
                "embed job %s",
                result.outcome.value,
                extra={
                    "document_id": job.document_id,
                    "version": job.version,
                    "segments": len(job.segment_ids),
                    "embedded": result.embedded,
                    "chunks_done": result.chunks_done,
                    "chunks_total": result.chunks_total,
                },
            )
        except PermanentJobError as exc:
            await self._report_failure(job, f"embedding failed: {exc}")
            raise
        except Exception as exc:
            if message.metadata.num_delivered >= self._max_deliver:
                await self._report_failure(job, f"embedding failed after {self._max_deliver} attempts: {_short(exc)}")
            raise
        finally:
            identity.reset(token)

    async def run(self, job: common_pb2.EmbedJob) -> EmbedResult:
        """Embeds the job's segments and reports progress; call with the job's identity bound."""
        try:
            return await self._run(job)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _GONE_CODES:
                log.info("document %s v%d is gone: %s", job.document_id, job.version, exc.details())
                return EmbedResult(EmbedOutcome.DOCUMENT_GONE)
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise PermanentJobError(f"{exc.details()}") from exc
            raise
        except InvalidArgument as exc:  # the embeddings API refused a text: retrying cannot help
            raise PermanentJobError(exc.message) from exc

    async def _run(self, job: common_pb2.EmbedJob) -> EmbedResult:
        index = vector_index_pb2_grpc.VectorIndexServiceStub(grpc_client.channel(self._vector_index_addr))
        found = await index.GetSegments(vector_index_pb2.GetSegmentsRequest(segment_ids=job.segment_ids))
        # a segment of another document or version means the ids were reused by a reprocess: not ours to embed
        segments = [s for s in found.segments if s.document_id == job.document_id and s.version == job.version]
        if not segments:
            log.info("segments of document %s v%d are gone", job.document_id, job.version)
            return EmbedResult(EmbedOutcome.DOCUMENT_GONE)
        # a blank segment still needs a vector, or the document would never count as fully embedded
        texts = [segment.text if segment.text.strip() else " " for segment in segments]
        vectors = await self._embedder.embed(texts, EmbedKind.PASSAGE)
        await index.UpsertVectors(
            vector_index_pb2.UpsertVectorsRequest(
                vectors=[
                    vector_index_pb2.SegmentVector(segment_id=segment.id, values=values)
                    for segment, values in zip(segments, vectors, strict=True)
                ],
                model=self._embedder.model_name,
            )
        )
        stats = await index.GetDocumentIndexStats(
            vector_index_pb2.GetDocumentIndexStatsRequest(document_id=job.document_id, version=job.version)
        )
        ingestion = ingestion_pb2_grpc.IngestionServiceStub(grpc_client.channel(self._ingestion_addr))
        await ingestion.ReportProgress(
            ingestion_pb2.ReportProgressRequest(
                document_id=job.document_id,
                version=job.version,
                status=common_pb2.DOCUMENT_STATUS_EMBEDDING,
                progress=ingestion_pb2.DocumentProgress(chunks_total=stats.segments, chunks_done=stats.embedded),
            )
        )
        return EmbedResult(EmbedOutcome.EMBEDDED, len(segments), stats.segments, stats.embedded)

    async def _report_failure(self, job: common_pb2.EmbedJob, error: str) -> None:
        """Tells ingestion the document FAILED in the embed stage; logged, never raised: the job fails anyway."""
        ingestion = ingestion_pb2_grpc.IngestionServiceStub(grpc_client.channel(self._ingestion_addr))
        try:
            await ingestion.ReportProgress(
                ingestion_pb2.ReportProgressRequest(
                    document_id=job.document_id,
                    version=job.version,
                    status=common_pb2.DOCUMENT_STATUS_FAILED,
                    error=error[:500],
                    failed_stage="embed",
                )
            )
        except Exception:
            log.exception("could not report document %s v%d as failed", job.document_id, job.version)


def _short(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{exc.__class__.__name__}: {exc}"[:300]


class EmbedJobConsumer:
    """Connects to NATS (retrying until it answers), declares the streams and consumes embed jobs until stopped.

    `check()` is the health dependency: it passes only while the NATS connection answers.
    """

    def __init__(self, nats_url: str, queues: JobQueues, spec: ConsumerSpec, handler: jetstream.JobHandler) -> None:
        self._nats_url = nats_url
        self._queues = queues
        self._spec = spec
        self._handler = handler
        self._client: NatsClient | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if self._client is None:
                    self._client = await jetstream.connect(self._nats_url, "embedding")
                js = self._client.jetstream()
                await jetstream.ensure_streams(js, self._queues)
                log.info("consuming %s as %s", self._spec.subject, self._spec.durable)
                await jetstream.consume(js, self._queues, self._spec, self._handler, stop)
            except Exception as exc:
                log.warning("embed job consumer failed, restarting: %r", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=2.0)
        await self.close()

    async def check(self) -> None:
        client = self._client
        if client is None or not client.is_connected:
            raise Unavailable("not connected to NATS")
        await client.flush(timeout=1)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            with contextlib.suppress(Exception):
                await client.close()
