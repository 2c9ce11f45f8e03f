"""Sessions and messages in Postgres (schema `chat`), always scoped by tenant.

Another tenant's session or message is reported exactly like a missing one (NotFound), so ids leak
nothing across tenants.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import asyncpg

from pdfchat.common.errors import InvalidArgument, NotFound

SCHEMA = "chat"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
TITLE_FROM_QUESTION_CHARS = 80

MessageStatus = Literal["streaming", "complete", "failed"]


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Session:
    id: str
    tenant_id: str
    user_id: str
    document_ids: tuple[str, ...]
    title: str
    created_at: datetime


@dataclass(frozen=True)
class StoredMessage:
    id: str
    session_id: str
    tenant_id: str
    role: str
    content: str
    citations: list[dict[str, Any]]
    usage: dict[str, Any] | None
    model: str
    status: MessageStatus
    created_at: datetime


@dataclass(frozen=True)
class AssistantOutcome:
    """How an answer ended, as stored on its message."""

    content: str
    citations: list[dict[str, Any]]
    usage: dict[str, Any] | None
    model: str
    status: MessageStatus


def validate_new_session(
    document_ids: Sequence[str], title: str, *, max_documents: int, max_title_chars: int
) -> tuple[tuple[str, ...], str]:
    """The session's document ids (trimmed, duplicates dropped, order kept) and title; InvalidArgument
    for no documents, an empty id, too many documents or too long a title."""
    if not document_ids:
        raise InvalidArgument("document_ids must name at least one document")
    cleaned: list[str] = []
    for position, document_id in enumerate(document_ids):
        value = document_id.strip()
        if not value:
            raise InvalidArgument(f"document_ids[{position}] is empty")
        if value not in cleaned:
            cleaned.append(value)
    if len(cleaned) > max_documents:
        raise InvalidArgument(f"a session covers at most {max_documents} documents, got {len(cleaned)}")
    title = title.strip()
    if len(title) > max_title_chars:
        raise InvalidArgument(f"title is {len(title)} characters; the limit is {max_title_chars}")
    return tuple(cleaned), title


async def init_connection(conn: asyncpg.Connection) -> None:
    """Pool connection set-up: jsonb columns read and write Python values."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _session(row: asyncpg.Record) -> Session:
    return Session(
        id=row["id"],
        tenant_id=row["tenant_id"],
        user_id=row["user_id"],
        document_ids=tuple(row["document_ids"]),
        title=row["title"],
        created_at=row["created_at"],
    )


def _message(row: asyncpg.Record) -> StoredMessage:
    return StoredMessage(
        id=row["id"],
        session_id=row["session_id"],
        tenant_id=row["tenant_id"],
        role=row["role"],
        content=row["content"],
        citations=list(row["citations"] or []),
        usage=row["usage"],
        model=row["model"],
        status=row["status"],
        created_at=row["created_at"],
    )


_MESSAGE_COLUMNS = "id, session_id, tenant_id, role, content, citations, usage, model, status, created_at"


class SessionRepository:
    """Postgres storage of sessions and messages. The pool must be set up with `init_connection`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_session(self, tenant_id: str, user_id: str, document_ids: Sequence[str], title: str) -> Session:
        row = await self._pool.fetchrow(
            "INSERT INTO chat.sessions (id, tenant_id, user_id, document_ids, title) VALUES ($1, $2, $3, $4, $5) "
            "RETURNING id, tenant_id, user_id, document_ids, title, created_at",
            new_id(),
            tenant_id,
            user_id,
            list(document_ids),
            title,
        )
        assert row is not None
        return _session(row)

    async def get_session(self, tenant_id: str, session_id: str) -> Session:
        row = await self._pool.fetchrow(
            "SELECT id, tenant_id, user_id, document_ids, title, created_at FROM chat.sessions "
            "WHERE id = $1 AND tenant_id = $2",
            session_id,
            tenant_id,
        )
        if row is None:
            raise NotFound(f"session {session_id} not found")
        return _session(row)

    async def add_user_message(self, session: Session, content: str) -> str:
        """Stores the question; an untitled session takes its first question as title."""
        message_id = new_id()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO chat.messages (id, session_id, tenant_id, role, content, status) "
                "VALUES ($1, $2, $3, 'user', $4, 'complete')",
                message_id,
                session.id,
                session.tenant_id,
                content,
            )
            await conn.execute(
                "UPDATE chat.sessions SET title = $3 WHERE id = $1 AND tenant_id = $2 AND title = ''",
                session.id,
                session.tenant_id,
                _title_from(content),
            )
        return message_id

    async def start_assistant_message(self, session: Session, message_id: str) -> None:
        """Creates the answer's row (status streaming) before its first event goes out."""
        await self._pool.execute(
            "INSERT INTO chat.messages (id, session_id, tenant_id, role, status) "
            "VALUES ($1, $2, $3, 'assistant', 'streaming')",
            message_id,
            session.id,
            session.tenant_id,
        )

    async def finish_assistant_message(self, tenant_id: str, message_id: str, outcome: AssistantOutcome) -> None:
        await self._pool.execute(
            "UPDATE chat.messages SET content = $3, citations = $4, usage = $5, model = $6, status = $7 "
            "WHERE id = $1 AND tenant_id = $2 AND role = 'assistant'",
            message_id,
            tenant_id,
            outcome.content,
            outcome.citations,
            outcome.usage,
            outcome.model,
            outcome.status,
        )

    async def get_message(self, tenant_id: str, session_id: str, message_id: str) -> StoredMessage:
        row = await self._pool.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM chat.messages WHERE id = $1 AND session_id = $2 AND tenant_id = $3",
            message_id,
            session_id,
            tenant_id,
        )
        if row is None:
            raise NotFound(f"message {message_id} not found")
        return _message(row)

    async def list_messages(self, tenant_id: str, session_id: str) -> list[StoredMessage]:
        """The session's messages, oldest first; NotFound when the session is not the tenant's."""
        await self.get_session(tenant_id, session_id)
        rows = await self._pool.fetch(
            f"SELECT {_MESSAGE_COLUMNS} FROM chat.messages WHERE tenant_id = $1 AND session_id = $2 "
            "ORDER BY created_at, id",
            tenant_id,
            session_id,
        )
        return [_message(row) for row in rows]


def _title_from(question: str) -> str:
    title = " ".join(question.split())
    if len(title) <= TITLE_FROM_QUESTION_CHARS:
        return title
    return title[: TITLE_FROM_QUESTION_CHARS - 1].rstrip() + "…"
