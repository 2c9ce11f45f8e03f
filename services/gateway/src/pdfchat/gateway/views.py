"""JSON shapes of the API: protobuf messages from the services -> plain dicts for REST, SSE and WebSocket.

Enum values lose their prefix (`DOCUMENT_STATUS_READY` -> `READY`), timestamps become ISO 8601 (null when
unset), pages stay 1-based as the contracts define them.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from pdfchat.v1 import chat_pb2, common_pb2, ingestion_pb2, orchestrator_pb2

_STATUS_PREFIX = "DOCUMENT_STATUS_"


def timestamp(value: Timestamp) -> str | None:
    if value.seconds == 0 and value.nanos == 0:
        return None
    return value.ToDatetime(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def document_status(value: int) -> str:
    return common_pb2.DocumentStatus.Name(value).removeprefix(_STATUS_PREFIX)  # type: ignore[arg-type]


def document(doc: ingestion_pb2.Document) -> dict[str, Any]:
    status = document_status(doc.status)
    failed = status == "FAILED"
    return {
        "id": doc.id,
        "filename": doc.filename,
        "status": status,
        "pages": doc.pages,
        "error": doc.error if failed else None,
        "failed_stage": doc.failed_stage if failed else None,
        "progress": {
            "pages_total": doc.progress.pages_total,
            "pages_done": doc.progress.pages_done,
            "chunks_total": doc.progress.chunks_total,
            "chunks_done": doc.progress.chunks_done,
        },
        "version": doc.version,
        "size_bytes": doc.size_bytes,
        "sha256": doc.sha256,
        "created_at": timestamp(doc.created_at),
        "updated_at": timestamp(doc.updated_at),
    }


def citation(cite: common_pb2.Citation) -> dict[str, Any]:
    return {
        "document_id": cite.document_id,
        "document_name": cite.document_name,
        "page": cite.page,
        "quote": cite.quote,
        "score": round(cite.score, 6),
        "segment_id": cite.segment_id,
        "boxes": [[box.x0, box.y0, box.x1, box.y1] for box in cite.boxes],
    }


def usage(value: common_pb2.Usage) -> dict[str, Any]:
    return {
        "input_tokens": value.input_tokens,
        "output_tokens": value.output_tokens,
        "cost_usd": value.cost_usd,
    }


def session(value: chat_pb2.Session) -> dict[str, Any]:
    return {
        "id": value.id,
        "document_ids": list(value.document_ids),
        "title": value.title,
        "created_at": timestamp(value.created_at),
    }


def chat_turn(turn: chat_pb2.ChatTurn) -> dict[str, Any]:
    return {
        "id": turn.id,
        "role": turn.role,
        "content": turn.content,
        "citations": [citation(cite) for cite in turn.citations],
        "created_at": timestamp(turn.created_at),
    }


def chat_event(event: chat_pb2.ChatEvent) -> dict[str, Any]:
    """One streamed event: `type` (citations, token, queued, end), `seq`, `message_id` and its fields."""
    body: dict[str, Any] = {"seq": event.seq, "message_id": event.message_id}
    kind = event.WhichOneof("kind")
    if kind == "citations":
        body.update(type="citations", citations=[citation(cite) for cite in event.citations.citations])
    elif kind == "token":
        body.update(type="token", text=event.token.text)
    elif kind == "queued":
        body.update(type="queued", expected_wait_seconds=event.queued.expected_wait_seconds)
    elif kind == "end":
        end = event.end
        body.update(
            type="end",
            answer=end.answer,
            citations=[citation(cite) for cite in end.citations],
            usage=usage(end.usage),
            model=end.model,
            finish_reason=end.finish_reason,
        )
    else:
        body.update(type="unknown")
    return body


def usage_report(reply: orchestrator_pb2.GetUsageResponse) -> dict[str, Any]:
    return {
        "requests": reply.requests,
        "usage": usage(reply.usage),
        "by_model": [
            {"model": item.model, "requests": item.requests, "usage": usage(item.usage)} for item in reply.by_model
        ],
    }
