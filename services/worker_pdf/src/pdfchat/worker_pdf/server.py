"""worker_pdf's glue: the JetStream consumer of parse jobs and the ServiceSpec it runs under.

The service serves gRPC health only; health is SERVING while the NATS connection is up. The consumer is
the spec's background task: it connects (retrying until NATS answers), declares the streams and pulls
`jobs.parse`. Each job runs with the job's tenant and request id bound as the caller identity, so the
calls to ingestion and vector_index carry them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import grpc
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from pdfchat.common import grpc_client, identity, jetstream
from pdfchat.common.grpc_server import ServiceSpec
from pdfchat.common.jetstream import ConsumerSpec, JobQueues, PermanentJobError
from pdfchat.common.object_store import ObjectStore, create_object_store
from pdfchat.common.settings import port_of
from pdfchat.v1 import common_pb2
from pdfchat.worker_pdf.extraction import ExtractionLimits, ReadOptions
from pdfchat.worker_pdf.pipeline import (
    FAILED,
    FAILED_STAGE,
    DocumentGone,
    ParseLimits,
    ParsePipeline,
    Progress,
    ProgressReporter,
)
from pdfchat.worker_pdf.remote import (
    IngestionProgressReporter,
    JetStreamEmbedPublisher,
    JetStreamParsePublisher,
    VectorIndexSegmentSink,
)
from pdfchat.worker_pdf.settings import WorkerPdfSettings

log = logging.getLogger(__name__)

SERVICE = "worker_pdf"
RECONNECT_SECONDS = 2.0


def decode_parse_job(data: bytes) -> common_pb2.ParseJob:
    """The job in a message; PermanentJobError when it is not one (retrying cannot fix it)."""
    job = common_pb2.ParseJob()
    try:
        job.ParseFromString(data)
    except DecodeError as exc:
        raise PermanentJobError(f"not a ParseJob: {exc}") from exc
    missing = [name for name in ("tenant_id", "document_id", "object_key") if not getattr(job, name)]
    if missing or job.version < 1:
        raise PermanentJobError(f"ParseJob lacks {', '.join(missing) or 'a version'}")
    if job.page_start != 0 and not 1 <= job.page_start <= job.page_end <= job.pages_total:
        raise PermanentJobError(f"ParseJob has a bad page range {job.page_start}-{job.page_end} of {job.pages_total}")
    return job


def parse_limits(settings: WorkerPdfSettings) -> ParseLimits:
    return ParseLimits(
        target_chars=settings.worker_pdf_chunk_target_chars,
        embed_batch_size=settings.worker_pdf_embed_batch_size,
        upsert_batch_size=settings.worker_pdf_upsert_batch_size,
        max_pages=settings.worker_pdf_max_pages,
        range_pages=settings.worker_pdf_range_pages,
        job_time_limit=settings.worker_pdf_job_time_limit_seconds,
        extraction=ExtractionLimits(
            page_time_limit=settings.worker_pdf_page_time_limit_seconds,
            read=ReadOptions(
                ocr_languages=settings.worker_pdf_ocr_languages,
                ocr_dpi=settings.worker_pdf_ocr_dpi,
                tessdata_dir=settings.worker_pdf_tessdata_dir,
            ),
        ),
    )


class ParseJobHandler:
    """Handles one `jobs.parse` message: returns to ack it, raises to have it redelivered."""

    def __init__(self, pipeline: ParsePipeline, reporter: ProgressReporter, max_deliver: int) -> None:
        self._pipeline = pipeline
        self._reporter = reporter
        self._max_deliver = max_deliver

    async def __call__(self, message: Msg) -> None:
        job = decode_parse_job(message.data)
        token = identity.bind(identity.Identity(tenant_id=job.tenant_id, request_id=job.request_id or uuid.uuid4().hex))
        try:
            result = await self._pipeline.run(job)
            log.info(
                "parse job of %s v%d pages %d-%d: %s",
                job.document_id,
                job.version,
                job.page_start,
                job.page_end,
                result.outcome.value,
                extra={
                    "pages": result.pages,
                    "chunks": result.chunks,
                    "reason": result.reason,
                    "failed_pages": len(result.failed_pages),
                },
            )
        except Exception as exc:
            if message.metadata.num_delivered >= self._max_deliver:
                # the job is about to be dead-lettered: without this the document would show PARSING forever
                await self._report_gave_up(job, exc)
            raise
        finally:
            identity.reset(token)

    async def _report_gave_up(self, job: common_pb2.ParseJob, exc: Exception) -> None:
        cause = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
        attempts = f"{self._max_deliver} attempt{'s' if self._max_deliver != 1 else ''}"
        reason = f"parsing failed after {attempts} ({cause}); reprocess the document to retry"
        try:
            await self._reporter.report(job, Progress(FAILED, error=reason, failed_stage=FAILED_STAGE))
        except DocumentGone:
            pass
        except Exception:
            log.exception("could not report document %s v%d as failed", job.document_id, job.version)


class ParseWorker:
    """The consumer loop as a background task, and the NATS connection health follows."""

    def __init__(self, settings: WorkerPdfSettings, store: ObjectStore) -> None:
        self._settings = settings
        self._store = store
        self._queues = JobQueues(settings.jobs_namespace)
        self._client: NatsClient | None = None

    def consumer_spec(self) -> ConsumerSpec:
        settings = self._settings
        return ConsumerSpec(
            durable=SERVICE,
            subject=self._queues.parse_subject,
            kind="parse",
            concurrency=settings.worker_pdf_concurrency,
            ack_wait_seconds=settings.worker_pdf_ack_wait_seconds,
            max_deliver=settings.worker_pdf_max_deliver,
        )

    def handler(self, client: NatsClient) -> ParseJobHandler:
        settings = self._settings
        reporter = IngestionProgressReporter(settings.ingestion_addr)
        pipeline = ParsePipeline(
            self._store,
            reporter,
            VectorIndexSegmentSink(settings.vector_index_addr),
            JetStreamEmbedPublisher(client.jetstream(), self._queues),
            JetStreamParsePublisher(client.jetstream(), self._queues),
            parse_limits(settings),
        )
        return ParseJobHandler(pipeline, reporter, settings.worker_pdf_max_deliver)

    async def run(self, stop: asyncio.Event) -> None:
        """Consumes parse jobs until `stop` is set; reconnects and restarts the consumer after a failure."""
        while not stop.is_set():
            try:
                if self._client is None or self._client.is_closed:
                    self._client = await jetstream.connect(self._settings.nats_url, SERVICE)
                js = self._client.jetstream()
                await jetstream.ensure_streams(js, self._queues)
                await jetstream.consume(js, self._queues, self.consumer_spec(), self.handler(self._client), stop)
            except Exception as exc:
                log.warning("parse consumer is down, retrying in %.0fs: %r", RECONNECT_SECONDS, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=RECONNECT_SECONDS)

    async def check_nats(self) -> None:
        if self._client is None or not self._client.is_connected:
            raise ConnectionError("not connected to NATS")

    async def close(self) -> None:
        if self._client is not None and not self._client.is_closed:
            await self._client.close()
        await grpc_client.close_all()


def build_spec(settings: WorkerPdfSettings, store: ObjectStore | None = None) -> ServiceSpec:
    worker = ParseWorker(settings, store if store is not None else create_object_store(settings))
    return ServiceSpec(
        name=SERVICE,
        port=port_of(settings.worker_pdf_addr),
        register=lambda server: None,
        service_names=[],
        dependency_checks=[worker.check_nats],
        background=[worker.run],
        on_stop=worker.close,
    )
