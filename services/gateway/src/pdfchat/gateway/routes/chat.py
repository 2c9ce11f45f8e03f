"""/v1/chat: sessions over documents, and answers as one JSON body or as server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from pdfchat.common.identity import Identity
from pdfchat.gateway import problems, views
from pdfchat.gateway._context import Gateway, caller, gateway
from pdfchat.v1 import chat_pb2, ingestion_pb2

router = APIRouter(prefix="/v1/chat", tags=["chat"])

Caller = Annotated[Identity, Depends(caller)]


class NewSession(BaseModel):
    document_ids: list[str] = Field(min_length=1, max_length=100)
    title: str = ""


class NewMessage(BaseModel):
    content: str = Field(min_length=1, max_length=8000)


async def verify_documents(gw: Gateway, ident: Identity, document_ids: list[str]) -> None:
    """Raises NOT_FOUND unless every document exists for the caller's tenant (another tenant's is missing)."""
    stub = gw.ingestion()
    await asyncio.gather(
        *(
            stub.GetDocument(
                ingestion_pb2.GetDocumentRequest(document_id=document_id),
                metadata=ident.to_metadata(),
                timeout=gw.settings.rpc_timeout_seconds,
            )
            for document_id in dict.fromkeys(document_ids)
        )
    )


@router.post("/sessions", status_code=201)
async def create_session(request: Request, body: NewSession, ident: Caller) -> JSONResponse:
    gw = gateway(request)
    await verify_documents(gw, ident, body.document_ids)
    reply = await gw.chat().CreateSession(
        chat_pb2.CreateSessionRequest(document_ids=body.document_ids, title=body.title),
        metadata=ident.to_metadata(),
        timeout=gw.settings.rpc_timeout_seconds,
    )
    return JSONResponse(views.session(reply.session), status_code=201)


@router.get("/sessions/{session_id}")
async def get_session(request: Request, session_id: str, ident: Caller) -> dict[str, Any]:
    gw = gateway(request)
    reply = await gw.chat().GetSession(
        chat_pb2.GetSessionRequest(session_id=session_id),
        metadata=ident.to_metadata(),
        timeout=gw.settings.rpc_timeout_seconds,
    )
    return views.session(reply.session)


@router.get("/sessions/{session_id}/messages")
async def list_messages(request: Request, session_id: str, ident: Caller) -> dict[str, Any]:
    gw = gateway(request)
    reply = await gw.chat().ListMessages(
        chat_pb2.ListMessagesRequest(session_id=session_id),
        metadata=ident.to_metadata(),
        timeout=gw.settings.rpc_timeout_seconds,
    )
    return {"messages": [views.chat_turn(turn) for turn in reply.messages]}


@router.post("/sessions/{session_id}/messages", response_model=None)
async def send_message(
    request: Request, session_id: str, body: NewMessage, ident: Caller
) -> JSONResponse | StreamingResponse:
    """The answer as one body, or (Accept: text/event-stream) as SSE events as they are generated."""
    gw = gateway(request)
    call = gw.chat().SendMessage(
        chat_pb2.SendMessageRequest(session_id=session_id, content=body.content),
        metadata=ident.to_metadata(),
        timeout=gw.settings.chat_timeout_seconds,
    )
    events = aiter(call)
    try:
        # The first event decides the HTTP status: a missing session is a 404, not a 200 with an error event.
        first = await anext(events)
    except StopAsyncIteration:
        raise problems.ProblemError(problems.INCOMPLETE_ANSWER) from None
    except BaseException:
        call.cancel()
        raise
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(
            _sse(first, events, call, request.url.path, ident.request_id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        event = first
        while event.event.WhichOneof("kind") != "end":
            event = await anext(events)
    except StopAsyncIteration:
        raise problems.ProblemError(problems.INCOMPLETE_ANSWER) from None
    finally:
        call.cancel()
    end = views.chat_event(event.event)
    return JSONResponse(
        {
            "message_id": end["message_id"],
            "answer": end["answer"],
            "citations": end["citations"],
            "usage": end["usage"],
            "model": end["model"],
            "finish_reason": end["finish_reason"],
        }
    )


def sse_event(name: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


async def _sse(
    first: chat_pb2.SendMessageResponse,
    events: AsyncIterator[chat_pb2.SendMessageResponse],
    call: Any,
    instance: str,
    request_id: str,
) -> AsyncIterator[bytes]:
    """SSE frames: event name = the event's type, id = seq, data = the event as JSON (with seq)."""
    last_seq = 0
    message_id = first.event.message_id
    try:
        event: chat_pb2.SendMessageResponse | None = first
        while event is not None:
            body = views.chat_event(event.event)
            last_seq = body["seq"]
            yield sse_event(body.pop("type"), body, last_seq)
            if event.event.WhichOneof("kind") == "end":
                return
            event = await anext(events, None)
        # The stream closed without an end event: say so, never pass it off as a complete answer.
        yield _sse_error(problems.INCOMPLETE_ANSWER, instance, request_id, message_id, last_seq)
    except grpc.aio.AioRpcError as exc:
        yield _sse_error(problems.from_exception(exc), instance, request_id, message_id, last_seq)
    finally:
        call.cancel()


def _sse_error(problem: problems.Problem, instance: str, request_id: str, message_id: str, seq: int) -> bytes:
    return sse_event("error", {**problem.body(instance, request_id), "message_id": message_id, "seq": seq})
