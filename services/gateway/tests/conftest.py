"""Gateway test fixtures: in-process fakes of ingestion, chat and orchestrator, an app wired to them, tokens.

The fakes are small synchronous gRPC servers on a loopback port that record the metadata of every call, so
tests can check the gateway's own translation (streaming, status mapping, identity propagation). Tests
against the real services live in test_stack.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient

from pdfchat.common.errors import PAYLOAD_TOO_LARGE_KEY, RETRY_AFTER_KEY
from pdfchat.gateway import auth
from pdfchat.gateway.app import create_app
from pdfchat.gateway.settings import GatewaySettings
from pdfchat.v1 import (
    chat_pb2,
    chat_pb2_grpc,
    common_pb2,
    ingestion_pb2,
    ingestion_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
)

FAKE_LIMIT_BYTES = 5 * 1024 * 1024


def _tenant(context: grpc.ServicerContext) -> str:
    return dict(context.invocation_metadata()).get("x-pdfchat-tenant", "")


@dataclass
class Recorder:
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, method: str, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls.append((method, dict(context.invocation_metadata())))

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]


class FakeIngestion(ingestion_pb2_grpc.IngestionServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.documents: dict[tuple[str, str], ingestion_pb2.Document] = {}
        self.by_key: dict[tuple[str, str], str] = {}

    def Upload(self, request_iterator: Iterator[ingestion_pb2.UploadRequest], context: Any) -> Any:
        self.recorder.record("Upload", context)
        first = next(request_iterator)
        assert first.WhichOneof("payload") == "metadata", "metadata must come first"
        meta = first.metadata
        sizes: list[int] = []
        for request in request_iterator:
            assert request.WhichOneof("payload") == "chunk"
            sizes.append(len(request.chunk))
            if sum(sizes) > FAKE_LIMIT_BYTES:
                context.set_trailing_metadata(((PAYLOAD_TOO_LARGE_KEY, "1"),))
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "file is too large")
        tenant = _tenant(context)
        self.recorder.uploads.append(
            {
                "tenant": tenant,
                "filename": meta.filename,
                "content_type": meta.content_type,
                "idempotency_key": meta.idempotency_key,
                "callback_url": meta.callback_url,
                "password": meta.password,
                "chunk_sizes": sizes,
            }
        )
        if meta.idempotency_key and (tenant, meta.idempotency_key) in self.by_key:
            existing = self.documents[(tenant, self.by_key[(tenant, meta.idempotency_key)])]
            return ingestion_pb2.UploadResponse(document=existing, created=False)
        doc = ingestion_pb2.Document(
            id=f"doc-{len(self.documents) + 1}",
            filename=meta.filename,
            status=common_pb2.DOCUMENT_STATUS_QUEUED,
            size_bytes=sum(sizes),
            sha256="ab" * 32,
            version=1,
        )
        doc.created_at.FromSeconds(1_700_000_000)
        doc.updated_at.FromSeconds(1_700_000_000)
        self.documents[(tenant, doc.id)] = doc
        if meta.idempotency_key:
            self.by_key[(tenant, meta.idempotency_key)] = doc.id
        return ingestion_pb2.UploadResponse(document=doc, created=True)

    def _find(self, document_id: str, context: Any) -> ingestion_pb2.Document:
        found = self.documents.get((_tenant(context), document_id))
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"document {document_id} not found")
        return found  # type: ignore[return-value]

    def GetDocument(self, request: Any, context: Any) -> Any:
        self.recorder.record("GetDocument", context)
        return ingestion_pb2.GetDocumentResponse(document=self._find(request.document_id, context))

    def ListDocuments(self, request: Any, context: Any) -> Any:
        self.recorder.record("ListDocuments", context)
        tenant = _tenant(context)
        docs = [doc for (owner, _), doc in self.documents.items() if owner == tenant]
        return ingestion_pb2.ListDocumentsResponse(documents=docs)

    def DeleteDocument(self, request: Any, context: Any) -> Any:
        self.recorder.record("DeleteDocument", context)
        self._find(request.document_id, context)
        del self.documents[(_tenant(context), request.document_id)]
        return ingestion_pb2.DeleteDocumentResponse()

    def ReprocessDocument(self, request: Any, context: Any) -> Any:
        self.recorder.record("ReprocessDocument", context)
        doc = self._find(request.document_id, context)
        doc.version += 1
        doc.status = common_pb2.DOCUMENT_STATUS_QUEUED
        return ingestion_pb2.ReprocessDocumentResponse(document=doc)

    def WatchDocument(self, request: Any, context: Any) -> Any:
        self.recorder.record("WatchDocument", context)
        doc = ingestion_pb2.Document()
        doc.CopyFrom(self._find(request.document_id, context))
        for status, pages in (
            (common_pb2.DOCUMENT_STATUS_PARSING, 3),
            (common_pb2.DOCUMENT_STATUS_EMBEDDING, 3),
            (common_pb2.DOCUMENT_STATUS_READY, 3),
        ):
            doc.status = status
            doc.pages = pages
            doc.progress.pages_total = pages
            doc.progress.pages_done = pages
            yield ingestion_pb2.WatchDocumentResponse(document=doc)
            time.sleep(0.01)


def answer_events(message_id: str, start_seq: int = 1) -> list[chat_pb2.ChatEvent]:
    citation = common_pb2.Citation(
        document_id="doc-1",
        page=2,
        quote="the quoted passage",
        score=0.75,
        segment_id="seg-1",
        boxes=[common_pb2.BoundingBox(x0=1, y0=2, x1=3, y1=4)],
    )
    events = [
        chat_pb2.ChatEvent(citations=chat_pb2.CitationsEvent(citations=[citation])),
        chat_pb2.ChatEvent(queued=common_pb2.QueueNotice(expected_wait_seconds=0.5)),
        chat_pb2.ChatEvent(token=common_pb2.TokenDelta(text="Hello")),
        chat_pb2.ChatEvent(token=common_pb2.TokenDelta(text=" world")),
        chat_pb2.ChatEvent(
            end=chat_pb2.MessageEnd(
                answer="Hello world",
                citations=[citation],
                usage=common_pb2.Usage(input_tokens=10, output_tokens=2),
                model="extractive",
                finish_reason="stop",
            )
        ),
    ]
    for offset, event in enumerate(events):
        event.seq = start_seq + offset
        event.message_id = message_id
    return events


class FakeChat(chat_pb2_grpc.ChatServiceServicer):
    """Sessions named by their behaviour: `missing` is NOT_FOUND, `cut` ends early, `limited` is 429."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def CreateSession(self, request: Any, context: Any) -> Any:
        self.recorder.record("CreateSession", context)
        return chat_pb2.CreateSessionResponse(
            session=chat_pb2.Session(id="sess-1", document_ids=request.document_ids, title=request.title)
        )

    def GetSession(self, request: Any, context: Any) -> Any:
        self.recorder.record("GetSession", context)
        return chat_pb2.GetSessionResponse(session=chat_pb2.Session(id=request.session_id))

    def SendMessage(self, request: Any, context: Any) -> Any:
        self.recorder.record("SendMessage", context)
        if request.session_id == "missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "session not found")
        if request.session_id == "limited":
            context.set_trailing_metadata(((RETRY_AFTER_KEY, "2.5"),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "provider quota exhausted")
        events = answer_events("msg-1")
        if request.session_id == "cut":
            events = events[:3]
        if request.session_id == "fails":
            yield chat_pb2.SendMessageResponse(event=events[0])
            context.abort(grpc.StatusCode.UNAVAILABLE, "provider went away")
        for event in events:
            yield chat_pb2.SendMessageResponse(event=event)

    def ResumeMessage(self, request: Any, context: Any) -> Any:
        self.recorder.record("ResumeMessage", context)
        for event in answer_events(request.message_id):
            if event.seq > request.last_seq:
                yield chat_pb2.ResumeMessageResponse(event=event)

    def ListMessages(self, request: Any, context: Any) -> Any:
        self.recorder.record("ListMessages", context)
        return chat_pb2.ListMessagesResponse(
            messages=[
                chat_pb2.ChatTurn(id="m1", role="user", content="question?"),
                chat_pb2.ChatTurn(id="m2", role="assistant", content="Hello world"),
            ]
        )


class FakeOrchestrator(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def GetUsage(self, request: Any, context: Any) -> Any:
        self.recorder.record("GetUsage", context)
        usage = common_pb2.Usage(input_tokens=100, output_tokens=20, cost_usd=0.01)
        return orchestrator_pb2.GetUsageResponse(
            requests=3, usage=usage, by_model=[orchestrator_pb2.ModelUsage(model="m", requests=3, usage=usage)]
        )


@dataclass
class FakeBackends:
    address: str
    recorder: Recorder
    ingestion: FakeIngestion
    server: grpc.Server

    def reset(self) -> None:
        self.recorder.calls.clear()
        self.recorder.uploads.clear()
        self.ingestion.documents.clear()
        self.ingestion.by_key.clear()


def start_fakes() -> FakeBackends:
    recorder = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    ingestion = FakeIngestion(recorder)
    ingestion_pb2_grpc.add_IngestionServiceServicer_to_server(ingestion, server)
    chat_pb2_grpc.add_ChatServiceServicer_to_server(FakeChat(recorder), server)
    orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(FakeOrchestrator(recorder), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return FakeBackends(f"127.0.0.1:{port}", recorder, ingestion, server)


def closed_address() -> str:
    """A loopback address nothing listens on: any call to it would fail with UNAVAILABLE."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def settings_for(**overrides: object) -> GatewaySettings:
    nowhere = closed_address()
    values: dict[str, object] = {
        "env": "test",
        "rate_limit_per_minute": 0,
        **{f"{name}_addr": nowhere for name in ("ingestion", "worker_pdf", "embedding", "vector_index")},
        "orchestrator_addr": nowhere,
        "chat_addr": nowhere,
    }
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def fakes() -> Iterator[FakeBackends]:
    backends = start_fakes()
    yield backends
    backends.server.stop(None)


@pytest.fixture
def fake_settings(fakes: FakeBackends) -> GatewaySettings:
    fakes.reset()
    return settings_for(ingestion_addr=fakes.address, chat_addr=fakes.address, orchestrator_addr=fakes.address)


@pytest.fixture
def client(fake_settings: GatewaySettings) -> Iterator[TestClient]:
    with TestClient(create_app(fake_settings)) as test_client:
        yield test_client


@pytest.fixture
def token_for(fake_settings: GatewaySettings) -> Callable[..., dict[str, str]]:
    def headers(tenant: str = "acme", user: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {auth.issue(fake_settings, tenant, user)}"}

    return headers


@pytest.fixture
def settings_factory() -> Callable[..., GatewaySettings]:
    """Settings for `create_app` with every service address pointing at a closed port, plus overrides."""
    return settings_for
