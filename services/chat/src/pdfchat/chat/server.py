"""ChatService over gRPC: requests to calls on the repository, the answer pipeline and the replay buffer.

Every call is scoped by the caller's tenant (bound by the server interceptor); domain errors become
status codes in the interceptor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from pdfchat.chat import replay
from pdfchat.chat.answering import Answerer
from pdfchat.chat.citations import from_records
from pdfchat.chat.sessions import Session, SessionRepository, StoredMessage, validate_new_session
from pdfchat.chat.settings import ChatSettings
from pdfchat.common import identity
from pdfchat.common.errors import InvalidArgument
from pdfchat.v1 import chat_pb2, chat_pb2_grpc

SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name


def _timestamp(value: object) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)  # type: ignore[arg-type]
    return stamp


def session_message(session: Session) -> chat_pb2.Session:
    return chat_pb2.Session(
        id=session.id,
        document_ids=list(session.document_ids),
        title=session.title,
        created_at=_timestamp(session.created_at),
    )


def turn_message(message: StoredMessage) -> chat_pb2.ChatTurn:
    return chat_pb2.ChatTurn(
        id=message.id,
        role=message.role,
        content=message.content,
        citations=from_records(message.citations),
        created_at=_timestamp(message.created_at),
    )


def _required(value: str, name: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(f"{name} is required")
    return value


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    def __init__(
        self, settings: ChatSettings, sessions: SessionRepository, answerer: Answerer, buffer: replay.ReplayBuffer
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._answerer = answerer
        self._buffer = buffer

    async def CreateSession(
        self, request: chat_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.CreateSessionResponse:
        caller = identity.require()
        document_ids, title = validate_new_session(
            request.document_ids,
            request.title,
            max_documents=self._settings.max_documents_per_session,
            max_title_chars=self._settings.max_title_chars,
        )
        session = await self._sessions.create_session(caller.tenant_id, caller.user_id, document_ids, title)
        return chat_pb2.CreateSessionResponse(session=session_message(session))

    async def GetSession(
        self, request: chat_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.GetSessionResponse:
        caller = identity.require()
        session = await self._sessions.get_session(caller.tenant_id, _required(request.session_id, "session_id"))
        return chat_pb2.GetSessionResponse(session=session_message(session))

    async def SendMessage(
        self, request: chat_pb2.SendMessageRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chat_pb2.SendMessageResponse]:
        caller = identity.require()
        session_id = _required(request.session_id, "session_id")
        self._answerer.validate_question(request.content)  # refuse bad input before touching storage
        session = await self._sessions.get_session(caller.tenant_id, session_id)
        async for event in self._answerer.send(session, request.content):
            yield chat_pb2.SendMessageResponse(event=event)

    async def ResumeMessage(
        self, request: chat_pb2.ResumeMessageRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chat_pb2.ResumeMessageResponse]:
        caller = identity.require()
        session_id = _required(request.session_id, "session_id")
        message_id = _required(request.message_id, "message_id")
        if request.last_seq < 0:
            raise InvalidArgument("last_seq must not be negative")
        message = await self._sessions.get_message(caller.tenant_id, session_id, message_id)
        events = replay.resume(self._buffer, message, request.last_seq, self._settings.resume_idle_timeout_seconds)
        async for event in events:
            yield chat_pb2.ResumeMessageResponse(event=event)

    async def ListMessages(
        self, request: chat_pb2.ListMessagesRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ListMessagesResponse:
        caller = identity.require()
        messages = await self._sessions.list_messages(caller.tenant_id, _required(request.session_id, "session_id"))
        return chat_pb2.ListMessagesResponse(messages=[turn_message(message) for message in messages])
