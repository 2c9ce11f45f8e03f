"""JetStream job queues: stream declaration, publishing, and the consumer loop every worker uses.

Layout: one work-queue stream `<NS>_JOBS` with subjects `<ns>.jobs.parse` and `<ns>.jobs.embed`, and a
dead-letter stream `<NS>_DLQ` on `<ns>.dlq.>`, and `<NS>_EVENTS` on `<ns>.events.>` for change events
(see `events`). The namespace (PDFCHAT_JOBS_NAMESPACE, default `pdfchat`)
lets test runs use their own streams on a shared server.

The consumer acks a message only after its handler returned (the handler commits its effects first), so
a crash redelivers it. While a handler runs, the message is marked in progress at a third of AckWait,
so long pages do not trigger a redelivery. A handler raises `PermanentJobError` for input that can never
succeed; that message, and one that has failed `max_deliver` times, goes to the dead-letter stream with
the reason in its headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)

EVENTS_MAX_AGE_SECONDS = 7 * 86_400.0


class PermanentJobError(Exception):
    """The job can never succeed (bad input): dead-letter it now instead of retrying."""


@dataclass(frozen=True)
class JobQueues:
    namespace: str = "pdfchat"

    @property
    def jobs_stream(self) -> str:
        return f"{self.namespace.upper()}_JOBS"

    @property
    def dlq_stream(self) -> str:
        return f"{self.namespace.upper()}_DLQ"

    @property
    def parse_subject(self) -> str:
        return f"{self.namespace}.jobs.parse"

    @property
    def embed_subject(self) -> str:
        return f"{self.namespace}.jobs.embed"

    def dlq_subject(self, kind: str) -> str:
        return f"{self.namespace}.dlq.{kind}"

    @property
    def events_stream(self) -> str:
        return f"{self.namespace.upper()}_EVENTS"

    @property
    def document_events_subject(self) -> str:
        return f"{self.namespace}.events.document"

    @property
    def streams(self) -> tuple[str, str, str]:
        """Every stream `ensure_streams` declares for this namespace."""
        return (self.jobs_stream, self.dlq_stream, self.events_stream)


async def connect(url: str, name: str) -> NatsClient:
    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %r", exc)

    return await nats.connect(
        url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=1, error_cb=on_error, connect_timeout=5
    )


async def ensure_streams(js: JetStreamContext, queues: JobQueues) -> None:
    """Declares the job, dead-letter and event streams; safe to call from every replica."""
    await _ensure_stream(
        js,
        StreamConfig(
            name=queues.jobs_stream,
            subjects=[f"{queues.namespace}.jobs.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=120.0,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=queues.dlq_stream,
            subjects=[f"{queues.namespace}.dlq.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=14 * 24 * 3600.0,
        ),
    )

    await _ensure_stream(
        js,
        StreamConfig(
            name=queues.events_stream,
            subjects=[f"{queues.namespace}.events.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=EVENTS_MAX_AGE_SECONDS,
            duplicate_window=120.0,
        ),
    )


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)


async def publish(js: JetStreamContext, subject: str, payload: bytes, *, msg_id: str) -> None:
    """Publishes with a message id, so a retried publish inside the duplicate window is stored once."""
    await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id}, timeout=5)


JobHandler = Callable[[Msg], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerSpec:
    durable: str
    subject: str
    kind: str
    """parse or embed: names the dead-letter subject."""
    concurrency: int = 2
    ack_wait_seconds: float = 60.0
    max_deliver: int = 5


async def consume(
    js: JetStreamContext, queues: JobQueues, spec: ConsumerSpec, handler: JobHandler, stop: asyncio.Event
) -> None:
    """Pulls and handles jobs until `stop` is set; in-flight jobs finish before it returns."""
    subscription = await js.pull_subscribe(
        spec.subject,
        durable=spec.durable,
        stream=queues.jobs_stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait_seconds,
            max_deliver=spec.max_deliver,
            max_ack_pending=max(spec.concurrency * 4, 16),
        ),
    )
    slots = asyncio.Semaphore(spec.concurrency)
    running: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        await slots.acquire()
        try:
            messages = await subscription.fetch(1, timeout=1.0)
        except (TimeoutError, nats.errors.TimeoutError):
            slots.release()
            continue
        except Exception as exc:
            slots.release()
            log.warning("fetch from %s failed: %r", spec.subject, exc)
            await asyncio.sleep(1.0)
            continue
        for message in messages:
            task = asyncio.create_task(_handle(js, queues, spec, handler, message))
            running.add(task)
            task.add_done_callback(running.discard)
            task.add_done_callback(lambda _: slots.release())
    if running:
        await asyncio.wait(running)
    with contextlib.suppress(Exception):
        await subscription.unsubscribe()


async def _heartbeat(message: Msg, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        with contextlib.suppress(Exception):
            await message.in_progress()


async def _handle(
    js: JetStreamContext, queues: JobQueues, spec: ConsumerSpec, handler: JobHandler, message: Msg
) -> None:
    heartbeat = asyncio.create_task(_heartbeat(message, spec.ack_wait_seconds / 3))
    delivered = message.metadata.num_delivered
    try:
        await handler(message)
    except PermanentJobError as exc:
        await _dead_letter(js, queues, spec, message, f"permanent: {exc}")
    except Exception as exc:
        if delivered >= spec.max_deliver:
            log.exception("job failed on its last delivery (%d), dead-lettering", delivered)
            await _dead_letter(js, queues, spec, message, f"max deliveries reached: {exc!r}")
        else:
            log.warning("job failed on delivery %d, will retry: %r", delivered, exc, exc_info=exc)
            await message.nak(delay=min(2.0**delivered, 30.0))
    else:
        await message.ack()
    finally:
        heartbeat.cancel()


async def _dead_letter(js: JetStreamContext, queues: JobQueues, spec: ConsumerSpec, message: Msg, reason: str) -> None:
    headers = {"Pdfchat-Dlq-Reason": reason[:500], "Pdfchat-Original-Subject": message.subject}
    await js.publish(queues.dlq_subject(spec.kind), message.data, headers=headers)
    await message.term()
