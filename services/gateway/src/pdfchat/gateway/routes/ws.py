"""WebSocket /v1/ws: asks, resumes and document watches multiplexed on one socket.

Client -> server messages (JSON objects):
  {type: "auth", token}                                 authenticate (or connect with ?token=...)
  {type: "ask", session_id, content, ref?}              stream an answer
  {type: "resume", session_id, message_id, last_seq}    replay an answer after last_seq and follow it
  {type: "watch", document_id}                          stream the document's state until it is final
  {type: "ping"}                                        -> {type: "pong"}

Server -> client events: {type: citations|token|queued|end, seq, message_id, session_id, ...} for answers,
{type: "document", document: {...}} for watches, {type: "authenticated", tenant, user}, and
{type: "error", status, title, detail, ...} for any failure: an error ends the operation it belongs to,
never the socket. `ref`, when a client sends one, is echoed on every event of that operation. A socket that
does not authenticate within the configured time is closed with code 4401.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import grpc
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from pdfchat.common.errors import InvalidArgument, PdfchatError, ResourceExhausted, Unauthenticated
from pdfchat.common.identity import Identity
from pdfchat.gateway import auth, problems, views
from pdfchat.gateway._context import Gateway, gateway, request_id
from pdfchat.v1 import chat_pb2, ingestion_pb2

log = logging.getLogger(__name__)

router = APIRouter(tags=["websocket"])

MAX_OPERATIONS_PER_SOCKET = 16
CLOSE_UNAUTHENTICATED = 4401


@router.websocket("/v1/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    session = _Socket(websocket, gateway(websocket), request_id(websocket.scope))
    try:
        await session.run()
    finally:
        await session.cancel_all()


class _Socket:
    def __init__(self, websocket: WebSocket, gw: Gateway, socket_request_id: str) -> None:
        self._ws = websocket
        self._gw = gw
        self._request_id = socket_request_id
        self._send_lock = asyncio.Lock()
        self._identity: Identity | None = None
        self._expires_at = 0
        self._operations: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        token = self._ws.query_params.get("token")
        if token:
            await self._authenticate(token, ref=None)
        while True:
            try:
                message = await self._receive()
            except WebSocketDisconnect:
                return
            except TimeoutError:
                await self._ws.close(CLOSE_UNAUTHENTICATED, "authentication required")
                return
            if message is not None:
                await self._dispatch(message)

    async def _receive(self) -> dict[str, Any] | None:
        if self._identity is None:
            text = await asyncio.wait_for(self._ws.receive_text(), self._gw.settings.ws_auth_timeout_seconds)
        else:
            text = await self._ws.receive_text()
        try:
            message = json.loads(text)
        except ValueError:
            await self._error(problems.Problem(400, "messages must be JSON objects"))
            return None
        if not isinstance(message, dict):
            await self._error(problems.Problem(400, "messages must be JSON objects"))
            return None
        return message

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        ref = message.get("ref") if isinstance(message.get("ref"), str | int) else None
        if kind == "ping":
            await self.send({"type": "pong"}, ref)
            return
        if kind == "auth":
            await self._authenticate(str(message.get("token") or ""), ref)
            return
        try:
            ident = await self._caller()
            if kind == "ask":
                session_id = _required(message, "session_id")
                content = _required(message, "content")
                context = {"session_id": session_id}
                self._start(f"ask:{uuid.uuid4().hex}", self._ask(ident, session_id, content, context, ref), ref)
            elif kind == "resume":
                session_id = _required(message, "session_id")
                message_id = _required(message, "message_id")
                last_seq = _integer(message.get("last_seq", 0), "last_seq")
                context = {"session_id": session_id, "message_id": message_id}
                key = f"resume:{message_id}"
                self._start(key, self._resume(ident, session_id, message_id, last_seq, context, ref), ref)
            elif kind == "watch":
                document_id = _required(message, "document_id")
                key = f"watch:{document_id}"
                if key not in self._operations:
                    self._start(key, self._watch(ident, document_id, ref), ref)
            else:
                raise InvalidArgument(f"unknown message type {kind!r}: expected auth, ask, resume, watch or ping")
        except PdfchatError as exc:
            await self._error(problems.from_exception(exc), ref, _context_of(message))

    async def _authenticate(self, token: str, ref: str | int | None) -> None:
        try:
            claims = auth.verify(self._gw.settings, token)
        except PdfchatError as exc:
            await self._error(problems.from_exception(exc), ref)
            return
        self._identity = Identity(claims.tenant, claims.user, claims.roles, self._request_id)
        self._expires_at = claims.expires_at
        await self.send({"type": "authenticated", "tenant": claims.tenant, "user": claims.user}, ref)

    async def _caller(self) -> Identity:
        """The socket's identity with a fresh request id for one operation, after the rate limit."""
        if self._identity is None:
            raise Unauthenticated("authenticate first: send {type: 'auth', token} or connect with ?token=")
        if time.time() >= self._expires_at:
            self._identity = None
            raise Unauthenticated("token expired: send {type: 'auth', token} with a new one")
        await self._gw.admit(self._identity.tenant_id)
        return dataclasses.replace(self._identity, request_id=uuid.uuid4().hex)

    def _start(self, key: str, operation: Coroutine[Any, Any, None], ref: str | int | None) -> None:
        self._operations = {k: task for k, task in self._operations.items() if not task.done()}
        if len(self._operations) >= MAX_OPERATIONS_PER_SOCKET:
            operation.close()
            raise ResourceExhausted(
                f"at most {MAX_OPERATIONS_PER_SOCKET} operations run at once on one socket", retry_after_seconds=1.0
            )
        previous = self._operations.pop(key, None)
        if previous is not None:
            previous.cancel()
        self._operations[key] = asyncio.create_task(operation, name=key)

    async def _ask(
        self, ident: Identity, session_id: str, content: str, context: dict[str, Any], ref: str | int | None
    ) -> None:
        call = self._gw.chat().SendMessage(
            chat_pb2.SendMessageRequest(session_id=session_id, content=content),
            metadata=ident.to_metadata(),
            timeout=self._gw.settings.chat_timeout_seconds,
        )
        await self._relay_answer(call, context, ref)

    async def _resume(
        self,
        ident: Identity,
        session_id: str,
        message_id: str,
        last_seq: int,
        context: dict[str, Any],
        ref: str | int | None,
    ) -> None:
        call = self._gw.chat().ResumeMessage(
            chat_pb2.ResumeMessageRequest(session_id=session_id, message_id=message_id, last_seq=last_seq),
            metadata=ident.to_metadata(),
            timeout=self._gw.settings.chat_timeout_seconds,
        )
        await self._relay_answer(call, context, ref)

    async def _relay_answer(self, call: Any, context: dict[str, Any], ref: str | int | None) -> None:
        stream: AsyncIterator[Any] = aiter(call)
        try:
            async for reply in stream:
                body = views.chat_event(reply.event)
                context["message_id"] = body["message_id"]
                context["seq"] = body["seq"]
                await self.send({**body, "session_id": context["session_id"]}, ref)
                if body["type"] == "end":
                    return
            # Closed without an end event: a cut stream must never look like a finished answer.
            await self._error(problems.INCOMPLETE_ANSWER, ref, context)
        except grpc.aio.AioRpcError as exc:
            await self._error(problems.from_exception(exc), ref, context)
        except WebSocketDisconnect:
            return
        except Exception as exc:
            await self._error(problems.from_exception(exc), ref, context)
        finally:
            call.cancel()

    async def _watch(self, ident: Identity, document_id: str, ref: str | int | None) -> None:
        call = self._gw.ingestion().WatchDocument(
            ingestion_pb2.WatchDocumentRequest(document_id=document_id),
            metadata=ident.to_metadata(),
            timeout=self._gw.settings.watch_timeout_seconds,
        )
        try:
            async for reply in call:
                await self.send({"type": "document", "document": views.document(reply.document)}, ref)
        except grpc.aio.AioRpcError as exc:
            await self._error(problems.from_exception(exc), ref, {"document_id": document_id})
        except WebSocketDisconnect:
            return
        except Exception as exc:
            await self._error(problems.from_exception(exc), ref, {"document_id": document_id})
        finally:
            call.cancel()

    async def send(self, event: dict[str, Any], ref: str | int | None = None) -> None:
        if ref is not None:
            event = {**event, "ref": ref}
        text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        async with self._send_lock:
            await self._ws.send_text(text)

    async def _error(
        self, problem: problems.Problem, ref: str | int | None = None, context: dict[str, Any] | None = None
    ) -> None:
        body = problem.body(request_id=self._request_id)
        body["problem_type"] = body.pop("type")
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.send({**(context or {}), **body, "type": "error"}, ref)

    async def cancel_all(self) -> None:
        tasks = [task for task in self._operations.values() if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._operations.clear()


def _required(message: dict[str, Any], name: str) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"'{name}' is required")
    return value


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"'{name}' must be a non-negative integer")
    return value


def _context_of(message: dict[str, Any]) -> dict[str, Any]:
    return {key: message[key] for key in ("session_id", "message_id", "document_id") if key in message}
