import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from pdfchat.common import jetstream
from pdfchat.common.jetstream import JobQueues, PermanentJobError
from pdfchat.v1 import common_pb2
from pdfchat.worker_pdf.chunking import segment_id
from pdfchat.worker_pdf.pipeline import FAILED, DocumentState, ParsePipeline, Progress
from pdfchat.worker_pdf.remote import JetStreamEmbedPublisher, JetStreamParsePublisher
from pdfchat.worker_pdf.server import ParseJobHandler, ParseWorker, build_spec, decode_parse_job
from pdfchat.worker_pdf.settings import WorkerPdfSettings

from ._fakes import PROBLEM_PDFS, XQUAD_DOCS, RecordingReporter, RecordingSink, parse_job, store_with


def test_parse_job_round_trips() -> None:
    job = parse_job("tenant-a/doc-1/1/a.pdf")
    assert decode_parse_job(job.SerializeToString()) == job


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff",
        common_pb2.ParseJob(document_id="d", version=1, object_key="k").SerializeToString(),
        common_pb2.ParseJob(tenant_id="t", document_id="d", object_key="k").SerializeToString(),
    ],
)
def test_message_that_is_no_valid_parse_job_is_permanently_refused(data: bytes) -> None:
    with pytest.raises(PermanentJobError):
        decode_parse_job(data)


def test_service_spec_serves_health_only_on_the_port_of_its_address(tmp_path: Path) -> None:
    settings = WorkerPdfSettings(worker_pdf_addr="127.0.0.1:51234", object_store_dir=str(tmp_path))
    spec = build_spec(settings)
    assert (spec.name, spec.port, list(spec.service_names)) == ("worker_pdf", 51234, [])
    assert len(spec.dependency_checks) == 1
    assert len(spec.background) == 1


async def test_health_check_fails_until_nats_is_connected(tmp_path: Path) -> None:
    worker = ParseWorker(WorkerPdfSettings(object_store_dir=str(tmp_path)), store=None)  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await worker.check_nats()


@pytest.fixture
async def queues(nats_url: str, jobs_namespace: str) -> AsyncIterator[tuple[NatsClient, JetStreamContext, JobQueues]]:
    # a namespace of its own: other services' tests consume parse and embed jobs under jobs_namespace
    own = JobQueues(f"{jobs_namespace}wp{uuid.uuid4().hex[:6]}")
    client = await jetstream.connect(nats_url, "worker_pdf-test")
    js = client.jetstream()
    await jetstream.ensure_streams(js, own)
    try:
        yield client, js, own
    finally:
        for stream in own.streams:
            await js.delete_stream(stream)
        await client.close()


async def _consume_until(
    js: JetStreamContext, queues: JobQueues, handler: ParseJobHandler, done: asyncio.Event, max_deliver: int = 5
) -> None:
    stop = asyncio.Event()
    spec = jetstream.ConsumerSpec(
        durable="worker_pdf", subject=queues.parse_subject, kind="parse", max_deliver=max_deliver
    )
    consumer = asyncio.create_task(jetstream.consume(js, queues, spec, handler, stop))
    try:
        await asyncio.wait_for(done.wait(), timeout=30)
    finally:
        stop.set()
        await asyncio.wait_for(consumer, timeout=15)


PARSING_RANGE = -1
"""DoneWhen a range result is reported."""


class DoneWhen(RecordingReporter):
    def __init__(self, status: int, fail_times: int = 0) -> None:
        super().__init__(fail_times=fail_times)
        self.done = asyncio.Event()
        self._status = status

    async def report(self, job: common_pb2.ParseJob, progress: Progress) -> DocumentState | None:
        state = await super().report(job, progress)
        if progress.status == self._status or (self._status == PARSING_RANGE and progress.range_result):
            self.done.set()
        return state


async def _embed_jobs(js: JetStreamContext, queues: JobQueues) -> list[tuple[str, common_pb2.EmbedJob]]:
    subscription = await js.pull_subscribe(queues.embed_subject, durable="embed-check", stream=queues.jobs_stream)
    found = []
    try:
        while True:
            messages = await subscription.fetch(10, timeout=1.0)
            for message in messages:
                job = common_pb2.EmbedJob()
                job.ParseFromString(message.data)
                found.append(((message.headers or {}).get("Nats-Msg-Id", ""), job))
                await message.ack()
    except TimeoutError:
        return found


@pytest.mark.integration
async def test_parse_job_on_nats_becomes_segments_and_embed_jobs_under_the_jobs_tenant(
    tmp_path: Path, queues: tuple[NatsClient, JetStreamContext, JobQueues]
) -> None:
    _, js, own = queues
    key = "tenant-a/doc-1/1/warsaw.pdf"
    store = await store_with(tmp_path / "objects", key, XQUAD_DOCS / "en" / "docs" / "xquad_01_Warsaw.pdf")
    reporter, sink = DoneWhen(PARSING_RANGE), RecordingSink()
    pipeline = ParsePipeline(store, reporter, sink, JetStreamEmbedPublisher(js, own), JetStreamParsePublisher(js, own))
    await jetstream.publish(js, own.parse_subject, parse_job(key).SerializeToString(), msg_id="parse:doc-1:1")

    await _consume_until(js, own, ParseJobHandler(pipeline, reporter, max_deliver=5), reporter.done)

    assert set(reporter.tenants) == {"tenant-a"}, "calls to other services carry the job's tenant"
    ids = [segment.id for segment in sink.segments]
    assert ids == [segment_id("doc-1", 1, segment.ordinal) for segment in sink.segments]
    [(msg_id, embed_job)] = await _embed_jobs(js, own)
    assert msg_id == "embed:doc-1:1:1-2:0"
    assert list(embed_job.segment_ids) == ids
    assert embed_job.tenant_id == "tenant-a"
    info = await js.consumer_info(own.jobs_stream, "worker_pdf")
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


@pytest.mark.integration
async def test_encrypted_pdf_is_failed_and_acked_not_retried(
    tmp_path: Path, queues: tuple[NatsClient, JetStreamContext, JobQueues]
) -> None:
    _, js, own = queues
    key = "tenant-a/doc-2/1/locked.pdf"
    store = await store_with(tmp_path / "objects", key, PROBLEM_PDFS / "sf__libreoffice-writer-password.pdf")
    reporter = DoneWhen(FAILED)
    pipeline = ParsePipeline(
        store, reporter, RecordingSink(), JetStreamEmbedPublisher(js, own), JetStreamParsePublisher(js, own)
    )
    job = parse_job(key, document_id="doc-2")
    await jetstream.publish(js, own.parse_subject, job.SerializeToString(), msg_id="parse:doc-2:1")

    await _consume_until(js, own, ParseJobHandler(pipeline, reporter, max_deliver=5), reporter.done)

    assert [(report.status, report.error) for report in reporter.reports] == [(FAILED, "password required")]
    info = await js.stream_info(own.jobs_stream)
    assert info.state.messages == 0, "the job was acked"
    dlq = await js.stream_info(own.dlq_stream)
    assert dlq.state.messages == 0


@pytest.mark.integration
async def test_transient_failure_is_redelivered_and_then_succeeds(
    tmp_path: Path, queues: tuple[NatsClient, JetStreamContext, JobQueues]
) -> None:
    _, js, own = queues
    key = "tenant-a/doc-3/1/warsaw.pdf"
    store = await store_with(tmp_path / "objects", key, XQUAD_DOCS / "en" / "docs" / "xquad_01_Warsaw.pdf")
    reporter, sink = DoneWhen(PARSING_RANGE, fail_times=1), RecordingSink()
    pipeline = ParsePipeline(store, reporter, sink, JetStreamEmbedPublisher(js, own), JetStreamParsePublisher(js, own))
    job = parse_job(key, document_id="doc-3")
    await jetstream.publish(js, own.parse_subject, job.SerializeToString(), msg_id="parse:doc-3:1")

    await _consume_until(js, own, ParseJobHandler(pipeline, reporter, max_deliver=5), reporter.done)

    assert len(reporter.tenants) >= 3, "the first report failed, the job came back and was reported again"
    assert reporter.reports[-1].range_result is not None


@pytest.mark.integration
async def test_job_failing_on_its_last_delivery_reports_the_document_failed(
    tmp_path: Path, queues: tuple[NatsClient, JetStreamContext, JobQueues]
) -> None:
    _, js, own = queues
    key = "tenant-a/doc-4/1/warsaw.pdf"
    store = await store_with(tmp_path / "objects", key, XQUAD_DOCS / "en" / "docs" / "xquad_01_Warsaw.pdf")
    reporter, sink = DoneWhen(FAILED), RecordingSink(fail=True)
    pipeline = ParsePipeline(store, reporter, sink, JetStreamEmbedPublisher(js, own), JetStreamParsePublisher(js, own))
    job = parse_job(key, document_id="doc-4")
    await jetstream.publish(js, own.parse_subject, job.SerializeToString(), msg_id="parse:doc-4:1")

    await _consume_until(js, own, ParseJobHandler(pipeline, reporter, max_deliver=1), reporter.done, max_deliver=1)

    failed = reporter.reports[-1]
    assert (failed.status, failed.failed_stage) == (FAILED, "parse")
    assert "parsing failed after 1 attempt (ConnectionError)" in failed.error
    for _ in range(50):  # the dead-letter publish follows the report
        if (await js.stream_info(own.dlq_stream)).state.messages == 1:
            break
        await asyncio.sleep(0.1)
    assert (await js.stream_info(own.dlq_stream)).state.messages == 1
