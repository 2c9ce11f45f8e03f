"""ChatService through the real chat process (stack_factory), on real Postgres and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from pdfchat.common.identity import Identity
from pdfchat.v1 import chat_pb2, chat_pb2_grpc
from pdfchat_tools import devstack

T1 = Identity(tenant_id="t1", user_id="u1").to_metadata()
T2 = Identity(tenant_id="t2", user_id="u2").to_metadata()


@pytest.fixture(scope="module")
def chat_addr(stack_factory: Callable[..., devstack.Stack]) -> str:
    stack = stack_factory(("chat",))
    return stack.config.env["PDFCHAT_CHAT_ADDR"]


@pytest.fixture
async def chat(chat_addr: str) -> AsyncIterator[chat_pb2_grpc.ChatServiceStub]:
    async with grpc.aio.insecure_channel(chat_addr) as channel:
        yield chat_pb2_grpc.ChatServiceStub(channel)


async def _create(chat: chat_pb2_grpc.ChatServiceStub, *document_ids: str) -> chat_pb2.Session:
    reply = await chat.CreateSession(
        chat_pb2.CreateSessionRequest(document_ids=list(document_ids), title="Manuals"), metadata=T1, timeout=10
    )
    return reply.session


@pytest.mark.integration
async def test_created_session_is_read_back_by_its_tenant(chat: chat_pb2_grpc.ChatServiceStub) -> None:
    session = await _create(chat, "doc-1", "doc-2")
    assert session.id
    assert list(session.document_ids) == ["doc-1", "doc-2"]
    assert session.created_at.seconds > 0
    found = await chat.GetSession(chat_pb2.GetSessionRequest(session_id=session.id), metadata=T1, timeout=10)
    assert found.session == session


@pytest.mark.integration
async def test_another_tenants_session_is_not_found(chat: chat_pb2_grpc.ChatServiceStub) -> None:
    session = await _create(chat, "doc-1")
    for call in (
        chat.GetSession(chat_pb2.GetSessionRequest(session_id=session.id), metadata=T2, timeout=10),
        chat.ListMessages(chat_pb2.ListMessagesRequest(session_id=session.id), metadata=T2, timeout=10),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert caught.value.details() == f"session {session.id} not found"


@pytest.mark.integration
async def test_sending_to_another_tenants_session_is_not_found(chat: chat_pb2_grpc.ChatServiceStub) -> None:
    session = await _create(chat, "doc-1")
    call = chat.SendMessage(chat_pb2.SendMessageRequest(session_id=session.id, content="hi"), metadata=T2, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [reply async for reply in call]
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    messages = await chat.ListMessages(chat_pb2.ListMessagesRequest(session_id=session.id), metadata=T1, timeout=10)
    assert list(messages.messages) == []


@pytest.mark.integration
@pytest.mark.parametrize(
    ("document_ids", "details"),
    [([], "at least one document"), (["doc-1", ""], "document_ids[1] is empty")],
)
async def test_session_without_valid_documents_is_invalid(
    chat: chat_pb2_grpc.ChatServiceStub, document_ids: list[str], details: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await chat.CreateSession(chat_pb2.CreateSessionRequest(document_ids=document_ids), metadata=T1, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details in (caught.value.details() or "")


@pytest.mark.integration
@pytest.mark.parametrize(("content", "details"), [("  ", "must not be empty"), ("x" * 4001, "the limit is 4000")])
async def test_empty_or_too_long_question_is_invalid(
    chat: chat_pb2_grpc.ChatServiceStub, content: str, details: str
) -> None:
    session = await _create(chat, "doc-1")
    request = chat_pb2.SendMessageRequest(session_id=session.id, content=content)
    call = chat.SendMessage(request, metadata=T1, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [reply async for reply in call]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details in (caught.value.details() or "")


@pytest.mark.integration
async def test_call_without_tenant_is_unauthenticated(chat: chat_pb2_grpc.ChatServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await chat.CreateSession(chat_pb2.CreateSessionRequest(document_ids=["d"]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.integration
async def test_question_without_reachable_retrieval_fails_with_a_status_and_is_stored_failed(
    chat: chat_pb2_grpc.ChatServiceStub,
) -> None:
    # Only chat runs here: embedding's address answers nothing, so the answer cannot even retrieve.
    session = await _create(chat, "doc-1")
    call = chat.SendMessage(chat_pb2.SendMessageRequest(session_id=session.id, content="Hi?"), metadata=T1, timeout=30)
    events: list[chat_pb2.ChatEvent] = []

    async def consume() -> None:
        async for reply in call:
            events.append(reply.event)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await consume()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not any(event.HasField("end") for event in events)
    listed = await chat.ListMessages(chat_pb2.ListMessagesRequest(session_id=session.id), metadata=T1, timeout=10)
    assert [(m.role, m.content) for m in listed.messages] == [("user", "Hi?"), ("assistant", "")]
    answer_id = listed.messages[1].id
    resumed = chat.ResumeMessage(
        chat_pb2.ResumeMessageRequest(session_id=session.id, message_id=answer_id, last_seq=0), metadata=T1, timeout=10
    )
    with pytest.raises(grpc.aio.AioRpcError) as resumed_error:
        _ = [reply async for reply in resumed]
    assert resumed_error.value.code() == grpc.StatusCode.UNAVAILABLE
    other = chat.ResumeMessage(
        chat_pb2.ResumeMessageRequest(session_id=session.id, message_id=answer_id), metadata=T2, timeout=10
    )
    with pytest.raises(grpc.aio.AioRpcError) as other_error:
        _ = [reply async for reply in other]
    assert other_error.value.code() == grpc.StatusCode.NOT_FOUND
