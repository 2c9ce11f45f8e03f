"""Document change events from ingestion, which drop the cached answers that cite the document.

Contract. Ingestion publishes, whenever a document is reprocessed or deleted, one JSON message on
`<ns>.events.document` (`<ns>` is PDFCHAT_JOBS_NAMESPACE):

    {"tenant_id": "t1", "document_id": "d1", "version": 3, "change": "reprocessed"}

`change` is `reprocessed` or `deleted`; `version` is the new version (0 when deleted) and is only
logged. A `Nats-Msg-Id` header of `<document_id>:<version>:<change>` makes a repeated publish count once.

Delivery. The subject is captured by the stream `<NS>_EVENTS` (limits retention, kept
`EVENTS_MAX_AGE_SECONDS`), which this module declares if missing; ingestion may declare the same stream
or publish with core NATS, which the stream captures as well. The orchestrator's replicas share one
durable consumer, so each event is handled once, and one published while every orchestrator was down
is handled when one comes back. A failed invalidation (Redis down) is redelivered with backoff.
Entries are keyed by document version as well, so a late event only delays the cleanup of entries no
new request can hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from redis.exceptions import RedisError

from pdfchat.common import jetstream
from pdfchat.orchestrator.cache import ResponseCache

log = logging.getLogger(__name__)

CHANGES = ("reprocessed", "deleted")
EVENTS_MAX_AGE_SECONDS = 7 * 86_400.0
DURABLE = "orchestrator-cache-invalidation"


def events_subject(namespace: str) -> str:
    return f"{namespace}.events.document"


def events_stream(namespace: str) -> str:
    return f"{namespace.upper()}_EVENTS"


@dataclass(frozen=True)
class DocumentChanged:
    tenant_id: str
    document_id: str
    change: str
    version: int = 0

    @classmethod
    def parse(cls, data: bytes) -> DocumentChanged:
        """Raises ValueError for a payload that can never be handled."""
        try:
            body = json.loads(data)
            event = cls(
                tenant_id=str(body["tenant_id"]),
                document_id=str(body["document_id"]),
                change=str(body.get("change", "reprocessed")),
                version=int(body.get("version") or 0),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a document event: {exc!r}") from exc
        if not event.tenant_id or not event.document_id or event.change not in CHANGES:
            raise ValueError(f"not a document event: {body!r}")
        return event

    def to_json(self) -> bytes:
        body = {"tenant_id": self.tenant_id, "document_id": self.document_id, "version": self.version}
        return json.dumps({**body, "change": self.change}).encode()

    @property
    def msg_id(self) -> str:
        return f"{self.document_id}:{self.version}:{self.change}"


async def ensure_events_stream(js: JetStreamContext, namespace: str) -> None:
    try:
        await js.stream_info(events_stream(namespace))
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=events_stream(namespace),
                subjects=[f"{namespace}.events.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=EVENTS_MAX_AGE_SECONDS,
                duplicate_window=120.0,
            )
        )


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
            await ensure_events_stream(js, namespace)
            subscription = await js.pull_subscribe(
                events_subject(namespace),
                durable=DURABLE,
                stream=events_stream(namespace),
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
