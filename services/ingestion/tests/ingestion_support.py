"""Helpers shared by the ingestion tests (conftest.py puts this directory on sys.path)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import nats
from nats.js.client import JetStreamContext

from pdfchat.common.events import DocumentChanged
from pdfchat.common.object_store import LocalObjectStore
from pdfchat.ingestion.documents import DocumentRepository, NewDocument
from pdfchat.ingestion.jobs import ParseJobPublisher
from pdfchat.ingestion.library import DocumentLibrary
from pdfchat.v1 import common_pb2


def tiny_pdf(label: str = "") -> bytes:
    """Bytes that pass the upload checks and differ on every call (a new sha256)."""
    return f"%PDF-1.4\n% {label} {uuid.uuid4().hex}\n%%EOF\n".encode()


@dataclass
class ParseJobs:
    """Reads the parse jobs published in the tests' namespace, keeping every one it has seen."""

    subscription: JetStreamContext.PullSubscription
    seen: list[common_pb2.ParseJob] = field(default_factory=list)

    async def _pull(self) -> int:
        try:
            messages = await self.subscription.fetch(10, timeout=0.5)
        except (nats.errors.TimeoutError, TimeoutError):
            return 0
        for message in messages:
            self.seen.append(common_pb2.ParseJob.FromString(message.data))
            await message.ack()
        return len(messages)

    async def wait_for(self, document_id: str, version: int = 1, within: float = 10.0) -> common_pb2.ParseJob:
        async with asyncio.timeout(within):
            while True:
                for job in self.seen:
                    if job.document_id == document_id and job.version == version:
                        return job
                await self._pull()

    async def count_for(self, document_id: str) -> int:
        """How many jobs for `document_id` were published, once the queue is drained."""
        while await self._pull():
            pass
        return sum(1 for job in self.seen if job.document_id == document_id)


@dataclass
class FakeSegmentIndex:
    """Records vector_index calls; `failing` makes them raise like an unreachable service."""

    calls: list[tuple[str, int]] = field(default_factory=list)
    activations: list[tuple[str, int]] = field(default_factory=list)
    failing: bool = False

    async def delete_document_segments(self, document_id: str, keep_version: int = 0) -> None:
        if self.failing:
            raise ConnectionError("vector_index unavailable")
        self.calls.append((document_id, keep_version))

    async def activate_version(self, document_id: str, version: int) -> None:
        if self.failing:
            raise ConnectionError("vector_index unavailable")
        self.activations.append((document_id, version))


@dataclass
class FlakyPublisher:
    """A ParseJobPublisher that can be told to fail, like a JetStream outage right after the commit."""

    inner: ParseJobPublisher
    failing: bool = False

    async def publish(self, document: object, request_id: str, password: str = "") -> None:
        if self.failing:
            raise ConnectionError("nats: no servers available")
        await self.inner.publish(document, request_id, password)  # type: ignore[arg-type]

    async def announce(self, event: DocumentChanged) -> None:
        await self.inner.announce(event)


@dataclass
class Harness:
    library: DocumentLibrary
    repository: DocumentRepository
    store: LocalObjectStore
    segments: FakeSegmentIndex
    publisher: FlakyPublisher


def new_document(tenant_id: str, **overrides: object) -> NewDocument:
    document_id = str(uuid.uuid4())
    values: dict[str, object] = {
        "id": document_id,
        "tenant_id": tenant_id,
        "user_id": "u1",
        "filename": "a.pdf",
        "content_type": "application/pdf",
        "size_bytes": 10,
        "sha256": uuid.uuid4().hex,
        "object_key": f"{tenant_id}/{document_id}/original.pdf",
        "idempotency_key": None,
        "callback_url": "",
    }
    values.update(overrides)
    return NewDocument(**values)  # type: ignore[arg-type]


@dataclass
class HookRequest:
    path: str
    headers: dict[str, str]
    body: bytes


class CallbackReceiver:
    """A real HTTP server on a free local port that answers with the given status codes in turn (the last
    one repeats) and records every request it gets."""

    def __init__(self, statuses: list[int]) -> None:
        import http.server
        import threading

        self.statuses = list(statuses)
        self.requests: list[HookRequest] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(HookRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/pdfchat"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
