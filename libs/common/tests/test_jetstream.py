import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from pdfchat.common import jetstream
from pdfchat.common.jetstream import ConsumerSpec, JobQueues, PermanentJobError

pytestmark = pytest.mark.integration


@pytest.fixture
async def nats_js(nats_url: str) -> AsyncIterator[tuple[NatsClient, JetStreamContext, JobQueues]]:
    queues = JobQueues(f"tjs{uuid.uuid4().hex[:8]}")
    client = await jetstream.connect(nats_url, "test")
    js = client.jetstream()
    await jetstream.ensure_streams(js, queues)
    try:
        yield client, js, queues
    finally:
        for stream in queues.streams:
            await js.delete_stream(stream)
        await client.close()


async def _run_until(condition: asyncio.Event, stop: asyncio.Event, consumer: asyncio.Task[None]) -> None:
    try:
        await asyncio.wait_for(condition.wait(), timeout=20)
    finally:
        stop.set()
        await asyncio.wait_for(consumer, timeout=10)


async def test_published_job_is_handled_and_acked(nats_js: tuple[NatsClient, JetStreamContext, JobQueues]) -> None:
    _, js, queues = nats_js
    seen: list[bytes] = []
    done, stop = asyncio.Event(), asyncio.Event()

    async def handler(message: Msg) -> None:
        seen.append(message.data)
        done.set()

    await jetstream.publish(js, queues.parse_subject, b"job-1", msg_id="job-1")
    spec = ConsumerSpec(durable="t-ack", subject=queues.parse_subject, kind="parse")
    consumer = asyncio.create_task(jetstream.consume(js, queues, spec, handler, stop))
    await _run_until(done, stop, consumer)
    assert seen == [b"job-1"]
    info = await js.stream_info(queues.jobs_stream)
    assert info.state.messages == 0, "an acked job leaves the work queue"


async def test_duplicate_publish_is_stored_once(nats_js: tuple[NatsClient, JetStreamContext, JobQueues]) -> None:
    _, js, queues = nats_js
    await jetstream.publish(js, queues.embed_subject, b"same", msg_id="dup-1")
    await jetstream.publish(js, queues.embed_subject, b"same", msg_id="dup-1")
    info = await js.stream_info(queues.jobs_stream)
    assert info.state.messages == 1


async def test_failing_job_is_redelivered_then_succeeds(
    nats_js: tuple[NatsClient, JetStreamContext, JobQueues],
) -> None:
    _, js, queues = nats_js
    attempts: list[int] = []
    done, stop = asyncio.Event(), asyncio.Event()

    async def handler(message: Msg) -> None:
        attempts.append(message.metadata.num_delivered)
        if len(attempts) == 1:
            raise ConnectionError("downstream briefly unavailable")
        done.set()

    await jetstream.publish(js, queues.parse_subject, b"flaky", msg_id="flaky")
    spec = ConsumerSpec(durable="t-retry", subject=queues.parse_subject, kind="parse", max_deliver=3)
    consumer = asyncio.create_task(jetstream.consume(js, queues, spec, handler, stop))
    await _run_until(done, stop, consumer)
    assert attempts == [1, 2]


async def test_poison_job_goes_to_the_dead_letter_stream_with_its_reason(
    nats_js: tuple[NatsClient, JetStreamContext, JobQueues],
) -> None:
    _, js, queues = nats_js
    stop = asyncio.Event()

    async def handler(message: Msg) -> None:
        raise PermanentJobError("not a PDF")

    dead = await js.subscribe(queues.dlq_subject("parse"), stream=queues.dlq_stream)
    await jetstream.publish(js, queues.parse_subject, b"poison", msg_id="poison")
    spec = ConsumerSpec(durable="t-dlq", subject=queues.parse_subject, kind="parse")
    consumer = asyncio.create_task(jetstream.consume(js, queues, spec, handler, stop))
    try:
        letter = await dead.next_msg(timeout=20)
    finally:
        stop.set()
        await asyncio.wait_for(consumer, timeout=10)
    assert letter.data == b"poison"
    assert letter.headers is not None
    assert "not a PDF" in letter.headers["Pdfchat-Dlq-Reason"]
    info = await js.stream_info(queues.jobs_stream)
    assert info.state.messages == 0, "a dead-lettered job leaves the work queue"
