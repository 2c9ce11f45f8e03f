"""The pipeline's retriever and generator over gRPC: embedding + vector_index, and the orchestrator.

Downstream failures become domain errors here, at the edge, with the service named in the message, so
the pipeline can store and replay them like its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from pdfchat.chat.answering import GenerationDone, GenerationEvent, TokenChunk, Usage, WaitingForCapacity
from pdfchat.chat.citations import Passage, select_passages
from pdfchat.chat.prompt import Prompt
from pdfchat.common import errors, grpc_client
from pdfchat.common.errors import RETRY_AFTER_KEY
from pdfchat.v1 import (
    embedding_pb2,
    embedding_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    vector_index_pb2,
    vector_index_pb2_grpc,
)

_PASSED_THROUGH: dict[grpc.StatusCode, type[errors.PdfchatError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.CANCELLED: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
}


def translate(service: str, exc: grpc.aio.AioRpcError) -> errors.PdfchatError:
    """The domain error for a failed call to `service`."""
    message = f"{service}: {exc.details() or exc.code().name}"
    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry_after = None
        trailing: Any = exc.trailing_metadata() or ()
        for key, value in trailing:
            if key == RETRY_AFTER_KEY:
                try:
                    retry_after = float(value)
                except (TypeError, ValueError):
                    retry_after = None
        return errors.ResourceExhausted(message, retry_after_seconds=retry_after)
    error_type = _PASSED_THROUGH.get(exc.code(), errors.PdfchatError)
    return error_type(message)


class GrpcRetriever:
    """Embeds the question (kind QUERY) and runs vector_index's hybrid search over the documents."""

    def __init__(self, embedding_addr: str, vector_index_addr: str, *, candidates: int, timeout: float) -> None:
        self._embedding_addr = embedding_addr
        self._vector_index_addr = vector_index_addr
        self._candidates = candidates
        self._timeout = timeout

    async def retrieve(self, question: str, document_ids: Sequence[str], top_k: int) -> list[Passage]:
        embedder = embedding_pb2_grpc.EmbeddingServiceStub(grpc_client.channel(self._embedding_addr))
        try:
            embedded = await embedder.Embed(
                embedding_pb2.EmbedRequest(texts=[question], kind=embedding_pb2.EMBED_KIND_QUERY),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise translate("embedding", exc) from exc
        if not embedded.embeddings:
            raise errors.Unavailable("embedding: no vector returned for the question")
        index = vector_index_pb2_grpc.VectorIndexServiceStub(grpc_client.channel(self._vector_index_addr))
        try:
            found = await index.Search(
                vector_index_pb2.SearchRequest(
                    query_text=question,
                    query_vector=list(embedded.embeddings[0].values),
                    document_ids=list(document_ids),
                    top_k=max(top_k, self._candidates),
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise translate("vector_index", exc) from exc
        candidates = [
            Passage(
                segment_id=hit.segment.id,
                document_id=hit.segment.document_id,
                version=hit.segment.version,
                page=hit.segment.page,
                text=hit.segment.text,
                score=hit.score,
                boxes=tuple((box.x0, box.y0, box.x1, box.y1) for box in hit.segment.boxes),
            )
            for hit in found.hits
        ]
        return select_passages(candidates, top_k)


class OrchestratorGenerator:
    """Streams the answer from orchestrator.GenerateStream at interactive priority."""

    def __init__(self, orchestrator_addr: str, *, timeout: float, temperature: float, max_tokens: int) -> None:
        self._addr = orchestrator_addr
        self._timeout = timeout
        self._temperature = temperature
        self._max_tokens = max_tokens

    def spec(self, prompt: Prompt) -> orchestrator_pb2.GenerationSpec:
        return orchestrator_pb2.GenerationSpec(
            messages=[orchestrator_pb2.ChatMessage(role=m.role, content=m.content) for m in prompt.messages],
            passages=[
                orchestrator_pb2.ContextPassage(
                    segment_id=p.segment_id, document_id=p.document_id, version=p.version, page=p.page, text=p.text
                )
                for p in prompt.passages
            ],
            question=prompt.question,
            temperature=self._temperature,
            max_tokens=self._max_tokens,
            priority=orchestrator_pb2.PRIORITY_INTERACTIVE,
            prompt_template_id=prompt.template_id,
            prompt_template_version=prompt.template_version,
        )

    async def generate(self, prompt: Prompt) -> AsyncIterator[GenerationEvent]:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(grpc_client.channel(self._addr))
        call = stub.GenerateStream(
            orchestrator_pb2.GenerateStreamRequest(spec=self.spec(prompt)), timeout=self._timeout
        )
        try:
            async for reply in call:
                kind = reply.WhichOneof("event")
                if kind == "delta":
                    yield TokenChunk(reply.delta.text)
                elif kind == "queued":
                    yield WaitingForCapacity(reply.queued.expected_wait_seconds)
                elif kind == "end":
                    yield GenerationDone(
                        usage=Usage(
                            input_tokens=reply.end.usage.input_tokens,
                            output_tokens=reply.end.usage.output_tokens,
                            cost_usd=reply.end.usage.cost_usd,
                        ),
                        model=reply.end.model,
                        finish_reason=reply.end.finish_reason,
                    )
        except grpc.aio.AioRpcError as exc:
            raise translate("orchestrator", exc) from exc
        finally:
            call.cancel()
