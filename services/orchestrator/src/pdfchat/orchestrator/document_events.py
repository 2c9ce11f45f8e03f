"""Document change events from ingestion (contract in `pdfchat.common.events`) drop the cached answers
that cite the document.

The orchestrator's replicas share one durable consumer on `<NS>_EVENTS`, so each event is handled once, and
one published while every orchestrator was down is handled when one comes back. A failed invalidation
(Redis down) is redelivered with backoff. Entries are keyed by document version as well, so a late event
only delays the cleanup of entries no new request can hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from redis.exceptions import RedisError

from pdfchat.common import jetstream
from pdfchat.common.events import DocumentChanged
from pdfchat.common.jetstream import JobQueues
from pdfchat.orchestrator.cache import ResponseCache

log = logging.getLogger(__name__)

DURABLE = "orchestrator-cache-invalidation"


async def handle(cache: ResponseCache, message: Msg) -> None:
    """Invalidates for one event message; acks it unless Redis failed (then it comes back later)."""
    try:
        event = DocumentChanged.parse(message.data)
    except ValueError as exc:
        log.error("dropping a malformed document event on %s: %s", message.subject, exc)
        await message.term()
        return
    try:
        await cache.invalidate_document(event.tenant_id, event.document_id)
    except RedisError as exc:
        delivered = message.metadata.num_delivered
        log.warning("cache invalidation for %s failed (delivery %d), will retry: %r", event.document_id, delivered, exc)
        await message.nak(delay=min(2.0**delivered, 30.0))
        return
    await message.ack()


async def run(nats_url: str, namespace: str, cache: ResponseCache, stop: asyncio.Event) -> None:
    """Background task: consumes document events until `stop`; reconnects while NATS is unreachable."""
    while not stop.is_set():
        try:
            client = await jetstream.connect(nats_url, name="orchestrator-cache-invalidation")
        except Exception as exc:  # NATS down: the cache still works, invalidation waits
            log.warning("cannot reach NATS for document events (%r); retrying", exc)
            await _sleep_unless(stop, 5.0)
            continue
        try:
            js = client.jetstream()
            queues = JobQueues(namespace)
            await jetstream.ensure_streams(js, queues)
            subscription = await js.pull_subscribe(
                queues.document_events_subject,
                durable=DURABLE,
                stream=queues.events_stream,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30.0, max_deliver=-1),
            )
            while not stop.is_set():
                try:
                    messages = await subscription.fetch(16, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                for message in messages:
                    await handle(cache, message)
        except Exception as exc:
            log.warning("document event consumer failed (%r); restarting", exc)
            await _sleep_unless(stop, 2.0)
        finally:
            with contextlib.suppress(Exception):
                await client.close()


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
