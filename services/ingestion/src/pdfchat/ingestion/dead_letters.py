"""The dead-letter safety net: every job that lands in `<ns>.dlq.>` FAILs its document.

Workers report FAILED themselves on a job's last delivery, before dead-lettering it; when that report is
lost (ingestion unreachable, the worker killed in between), the document would wait forever. This
durable consumer on the dead-letter stream (`ingestion-dlq`, limits retention, so other readers of the
stream are unaffected) reads each dead-lettered job and records the failure with the stage (the subject's
last token: parse or embed) and the reason from the `Pdfchat-Dlq-Reason` header. A message is acked only
after the failure is committed; recording is idempotent, so a redelivery changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from pdfchat.common.jetstream import JobQueues
from pdfchat.ingestion.library import DocumentLibrary

log = logging.getLogger(__name__)

DURABLE = "ingestion-dlq"
REASON_HEADER = "Pdfchat-Dlq-Reason"


async def record(library: DocumentLibrary, message: Msg) -> None:
    """Records one dead-lettered job's failure (raises when it could not be committed)."""
    kind = message.subject.rsplit(".", 1)[-1]
    reason = (message.headers or {}).get(REASON_HEADER, "")
    document = await library.record_dead_letter(kind, message.data, reason)
    if document is not None:
        log.info("dead-lettered %s job of document %s v%d recorded", kind, document.id, document.version)


async def run_dead_letter_consumer(
    js: JetStreamContext, queues: JobQueues, library: DocumentLibrary, stop: asyncio.Event
) -> None:
    """Consumes the dead-letter stream until `stop` is set (a ServiceSpec background task)."""
    subscription: JetStreamContext.PullSubscription | None = None
    while not stop.is_set():
        try:
            if subscription is None:
                subscription = await js.pull_subscribe(
                    f"{queues.namespace}.dlq.>",
                    durable=DURABLE,
                    stream=queues.dlq_stream,
                    config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30.0),
                )
            messages = await subscription.fetch(10, timeout=1.0)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        except Exception as exc:
            log.warning("dead-letter fetch failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            continue
        for message in messages:
            try:
                await record(library, message)
            except Exception:
                log.exception("could not record a dead-lettered job; it will be redelivered")
                with contextlib.suppress(Exception):
                    await message.nak(delay=5.0)
                continue
            await message.ack()
    if subscription is not None:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
