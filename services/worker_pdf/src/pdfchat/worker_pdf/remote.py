"""The pipeline's dependencies for real: ingestion and vector_index over gRPC, embed jobs on JetStream.

Calls go through `grpc_client.channel`, so they carry the identity bound for the job (its tenant and
request id) and a deadline. Status codes the pipeline must tell apart are translated here: NOT_FOUND and
FAILED_PRECONDITION from ingestion mean the job's document takes no more reports (DocumentGone); every
other failure propagates, so the job is redelivered.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from nats.js import JetStreamContext

from pdfchat.common import grpc_client, jetstream
from pdfchat.common.jetstream import JobQueues
from pdfchat.v1 import common_pb2, ingestion_pb2, ingestion_pb2_grpc, vector_index_pb2, vector_index_pb2_grpc
from pdfchat.worker_pdf.pipeline import DocumentGone, DocumentState, Progress

_GONE_CODES = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION})


class IngestionProgressReporter:
    def __init__(self, address: str) -> None:
        self._address = address

    async def report(self, job: common_pb2.ParseJob, progress: Progress) -> DocumentState | None:
        stub = ingestion_pb2_grpc.IngestionServiceStub(grpc_client.channel(self._address))
        request = ingestion_pb2.ReportProgressRequest(
            document_id=job.document_id,
            version=job.version,
            status=progress.status,
            progress=ingestion_pb2.DocumentProgress(
                pages_total=progress.pages_total, pages_done=progress.pages_done, chunks_total=progress.chunks_total
            ),
            error=progress.error,
            failed_stage=progress.failed_stage,
        )
        if progress.range_result is not None:
            result = progress.range_result
            request.range_result.CopyFrom(
                ingestion_pb2.PageRangeResult(
                    page_start=result.page_start, page_end=result.page_end, segments=result.segments
                )
            )
        try:
            reply = await stub.ReportProgress(request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _GONE_CODES:
                raise DocumentGone(f"ingestion answered {exc.code().name}: {exc.details()}") from exc
            raise
        if not reply.HasField("document") or reply.document.version == 0:
            return None
        return DocumentState(version=reply.document.version, status=reply.document.status)


class VectorIndexSegmentSink:
    def __init__(self, address: str) -> None:
        self._address = address

    async def upsert(self, segments: Sequence[vector_index_pb2.Segment]) -> None:
        stub = vector_index_pb2_grpc.VectorIndexServiceStub(grpc_client.channel(self._address))
        await stub.UpsertSegments(vector_index_pb2.UpsertSegmentsRequest(segments=segments))


class JetStreamEmbedPublisher:
    def __init__(self, js: JetStreamContext, queues: JobQueues) -> None:
        self._js = js
        self._queues = queues

    async def publish(self, job: common_pb2.EmbedJob, msg_id: str) -> None:
        await jetstream.publish(self._js, self._queues.embed_subject, job.SerializeToString(), msg_id=msg_id)


class JetStreamParsePublisher:
    """Publishes page-range parse jobs on the subject the planning job came from."""

    def __init__(self, js: JetStreamContext, queues: JobQueues) -> None:
        self._js = js
        self._queues = queues

    async def publish(self, job: common_pb2.ParseJob, msg_id: str) -> None:
        await jetstream.publish(self._js, self._queues.parse_subject, job.SerializeToString(), msg_id=msg_id)
