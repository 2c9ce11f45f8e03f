from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from pdfchat.chat.sessions import (
    MIGRATIONS_DIR,
    SCHEMA,
    AssistantOutcome,
    SessionRepository,
    init_connection,
    validate_new_session,
)
from pdfchat.common import db
from pdfchat.common.errors import InvalidArgument, NotFound


def test_new_session_documents_are_trimmed_and_deduplicated_in_order() -> None:
    ids, title = validate_new_session([" d2", "d1", "d2 "], "  My title ", max_documents=5, max_title_chars=20)
    assert ids == ("d2", "d1")
    assert title == "My title"


@pytest.mark.parametrize(
    ("document_ids", "title", "message"),
    [
        ([], "", "at least one document"),
        (["d1", "  "], "", r"document_ids\[1\] is empty"),
        (["a", "b", "c"], "", "at most 2 documents"),
        (["d1"], "x" * 21, "limit is 20"),
    ],
)
def test_invalid_new_session_is_refused(document_ids: list[str], title: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_new_session(document_ids, title, max_documents=2, max_title_chars=20)


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[SessionRepository]:
    pool: asyncpg.Pool = await db.create_pool(database_url, init=init_connection)
    await db.migrate(pool, SCHEMA, MIGRATIONS_DIR)
    yield SessionRepository(pool)
    await pool.close()


@pytest.mark.integration
async def test_session_is_created_and_read_back_by_its_tenant(repository: SessionRepository) -> None:
    created = await repository.create_session("t1", "u1", ("d1", "d2"), "Title")
    found = await repository.get_session("t1", created.id)
    assert found == created
    assert found.document_ids == ("d1", "d2")


@pytest.mark.integration
async def test_another_tenants_session_is_not_found(repository: SessionRepository) -> None:
    created = await repository.create_session("t1", "u1", ("d1",), "")
    with pytest.raises(NotFound, match=f"session {created.id} not found"):
        await repository.get_session("t2", created.id)
    with pytest.raises(NotFound):
        await repository.list_messages("t2", created.id)


@pytest.mark.integration
async def test_malformed_session_id_is_simply_not_found(repository: SessionRepository) -> None:
    with pytest.raises(NotFound):
        await repository.get_session("t1", "not-a-uuid'; --")


@pytest.mark.integration
async def test_messages_list_in_order_with_stored_answer(repository: SessionRepository) -> None:
    session = await repository.create_session("t1", "u1", ("d1",), "")
    await repository.add_user_message(session, "What is the warranty?")
    await repository.start_assistant_message(session, "m-answer-" + session.id)
    citations = [{"document_id": "d1", "page": 2, "quote": "q", "score": 0.5, "segment_id": "s", "boxes": []}]
    await repository.finish_assistant_message(
        "t1",
        "m-answer-" + session.id,
        AssistantOutcome("Two years [1].", citations, {"input_tokens": 3}, "sim", "complete"),
    )
    messages = await repository.list_messages("t1", session.id)
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", "What is the warranty?", "complete"),
        ("assistant", "Two years [1].", "complete"),
    ]
    assert messages[1].citations == citations
    assert messages[1].usage == {"input_tokens": 3}
    assert (await repository.get_session("t1", session.id)).title == "What is the warranty?"


@pytest.mark.integration
async def test_finishing_is_scoped_by_tenant(repository: SessionRepository) -> None:
    session = await repository.create_session("t1", "u1", ("d1",), "kept")
    message_id = "m-scoped-" + session.id
    await repository.start_assistant_message(session, message_id)
    await repository.finish_assistant_message("t2", message_id, AssistantOutcome("hijack", [], None, "", "complete"))
    message = await repository.get_message("t1", session.id, message_id)
    assert (message.status, message.content) == ("streaming", "")
    with pytest.raises(NotFound):
        await repository.get_message("t2", session.id, message_id)
    assert (await repository.get_session("t1", session.id)).title == "kept"
