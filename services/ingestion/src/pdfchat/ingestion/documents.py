"""Documents: their record, the stage state machine, and their table (schema `ingestion`).

A document moves QUEUED -> PARSING -> EMBEDDING -> READY, or to FAILED from any stage. Each upload or
reprocess starts a new `version`; workers report progress for the version their job names, so reports
of an older version (a job still running when the document was reprocessed) change nothing. Stages only
move forward within a version: parse and embed run concurrently (embed batches start while later pages
are still parsing), so reports arrive out of order, and a late PARSING report must not pull an
EMBEDDING document back. Progress counters take the larger of the stored and the reported value for the
same reason.

Every change commits together with `pg_notify('ingestion_documents', id)`, which is what watchers
(see `watch`) wake up on, in this replica or any other.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg

from pdfchat.common.errors import InvalidArgument, NotFound

NOTIFY_CHANNEL = "ingestion_documents"
TABLE = "ingestion.documents"


class DocumentStatus(StrEnum):
    QUEUED = "QUEUED"
    PARSING = "PARSING"
    EMBEDDING = "EMBEDDING"
    READY = "READY"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in (DocumentStatus.READY, DocumentStatus.FAILED)


_STAGE_ORDER = {
    DocumentStatus.QUEUED: 0,
    DocumentStatus.PARSING: 1,
    DocumentStatus.EMBEDDING: 2,
    DocumentStatus.READY: 3,
    DocumentStatus.FAILED: 3,
}

REPORTABLE = frozenset({DocumentStatus.PARSING, DocumentStatus.EMBEDDING, DocumentStatus.READY, DocumentStatus.FAILED})


@dataclass(frozen=True)
class Progress:
    pages_total: int = 0
    pages_done: int = 0
    chunks_total: int = 0
    chunks_done: int = 0


@dataclass(frozen=True)
class Document:
    id: str
    tenant_id: str
    user_id: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    object_key: str
    status: DocumentStatus
    version: int
    progress: Progress
    error: str
    failed_stage: str
    idempotency_key: str | None
    callback_url: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Document:
        return cls(
            id=row["id"],
            tenant_id=row["tenant_id"],
            user_id=row["user_id"],
            filename=row["filename"],
            content_type=row["content_type"],
            size_bytes=row["size_bytes"],
            sha256=row["sha256"],
            object_key=row["object_key"],
            status=DocumentStatus(row["status"]),
            version=row["version"],
            progress=Progress(
                pages_total=row["pages"],
                pages_done=row["pages_done"],
                chunks_total=row["chunks_total"],
                chunks_done=row["chunks_done"],
            ),
            error=row["error"],
            failed_stage=row["failed_stage"],
            idempotency_key=row["idempotency_key"],
            callback_url=row["callback_url"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            deleted_at=row["deleted_at"],
        )


@dataclass(frozen=True)
class ProgressReport:
    """What a worker says about one version of a document."""

    version: int
    status: DocumentStatus
    progress: Progress = Progress()
    error: str = ""
    failed_stage: str = ""


def advance(document: Document, report: ProgressReport) -> Document:
    """The document after `report`; the same document when the report must change nothing.

    Ignored: reports for another version, for a deleted document, and any report once the version is
    READY or FAILED. A stage never moves back; READY follows EMBEDDING once every chunk is embedded;
    READY may also be reported directly (a document without text has no chunks).

    Raises:
        InvalidArgument: the report names a status a worker cannot report (QUEUED).
    """
    if report.status not in REPORTABLE:
        raise InvalidArgument(f"a progress report cannot set status {report.status.value}")
    if document.is_deleted or report.version != document.version or document.is_final:
        return document
    current, reported = document.progress, report.progress
    progress = Progress(
        pages_total=max(current.pages_total, reported.pages_total),
        pages_done=max(current.pages_done, reported.pages_done),
        chunks_total=max(current.chunks_total, reported.chunks_total),
        chunks_done=max(current.chunks_done, reported.chunks_done),
    )
    status = document.status
    if _STAGE_ORDER[report.status] >= _STAGE_ORDER[status]:
        status = report.status
    if status == DocumentStatus.EMBEDDING and 0 < progress.chunks_total <= progress.chunks_done:
        status = DocumentStatus.READY
    error, failed_stage = document.error, document.failed_stage
    if status == DocumentStatus.FAILED:
        error = report.error.strip() or "processing failed"
        failed_stage = report.failed_stage.strip()
    return dataclasses.replace(document, status=status, progress=progress, error=error, failed_stage=failed_stage)


@dataclass(frozen=True)
class NewDocument:
    id: str
    tenant_id: str
    user_id: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    object_key: str
    idempotency_key: str | None
    callback_url: str


@dataclass(frozen=True)
class Page:
    documents: Sequence[Document]
    next_page_token: str


DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def encode_page_token(document: Document) -> str:
    raw = json.dumps([document.created_at.isoformat(), document.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, str]:
    """The (created_at, id) a page continues after; InvalidArgument for a token this service did not make."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, document_id = json.loads(raw)
        return datetime.fromisoformat(created_at), str(document_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidArgument("page_token is not valid") from exc


def page_size_of(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _returned(row: asyncpg.Record | None) -> asyncpg.Record:
    if row is None:  # pragma: no cover - INSERT/UPDATE ... RETURNING of a locked row always returns it
        raise RuntimeError("statement returned no row")
    return row


def _not_found(document_id: str) -> NotFound:
    return NotFound(f"document {document_id} not found")


async def _notify(conn: Any, document_id: str) -> None:
    # In the caller's transaction: watchers are woken only if the change commits.
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, document_id)


class DocumentRepository:
    """The `ingestion.documents` table. Every read and write names the tenant."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, tenant_id: str, document_id: str) -> Document:
        """The live document; NotFound when missing, deleted, or another tenant's."""
        row = await self._pool.fetchrow(
            f"SELECT * FROM {TABLE} WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL", document_id, tenant_id
        )
        if row is None:
            raise _not_found(document_id)
        return Document.from_row(row)

    async def find_by_sha256(self, tenant_id: str, sha256: str) -> Document | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {TABLE} WHERE tenant_id = $1 AND sha256 = $2 AND deleted_at IS NULL", tenant_id, sha256
        )
        return None if row is None else Document.from_row(row)

    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> Document | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {TABLE} WHERE tenant_id = $1 AND idempotency_key = $2 AND deleted_at IS NULL",
            tenant_id,
            key,
        )
        return None if row is None else Document.from_row(row)

    async def insert(self, new: NewDocument) -> Document:
        """Inserts a QUEUED version-1 document.

        Raises:
            asyncpg.UniqueViolationError: a live document with the same file or idempotency key exists.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""
                INSERT INTO {TABLE} (id, tenant_id, user_id, filename, content_type, size_bytes, sha256,
                                     object_key, idempotency_key, callback_url)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                RETURNING *
                """,
                new.id,
                new.tenant_id,
                new.user_id,
                new.filename,
                new.content_type,
                new.size_bytes,
                new.sha256,
                new.object_key,
                new.idempotency_key,
                new.callback_url,
            )
            await _notify(conn, new.id)
        return Document.from_row(_returned(row))

    async def list_page(self, tenant_id: str, page_size: int, page_token: str = "") -> Page:
        """Live documents, newest first."""
        size = page_size_of(page_size)
        if page_token:
            created_at, after_id = decode_page_token(page_token)
            rows = await self._pool.fetch(
                f"""
                SELECT * FROM {TABLE}
                WHERE tenant_id = $1 AND deleted_at IS NULL AND (created_at, id) < ($2, $3)
                ORDER BY created_at DESC, id DESC LIMIT $4
                """,
                tenant_id,
                created_at,
                after_id,
                size + 1,
            )
        else:
            rows = await self._pool.fetch(
                f"""
                SELECT * FROM {TABLE} WHERE tenant_id = $1 AND deleted_at IS NULL
                ORDER BY created_at DESC, id DESC LIMIT $2
                """,
                tenant_id,
                size + 1,
            )
        documents = [Document.from_row(row) for row in rows[:size]]
        next_token = encode_page_token(documents[-1]) if len(rows) > size else ""
        return Page(documents=documents, next_page_token=next_token)

    async def mark_published(self, document_id: str, version: int) -> None:
        """Records that JetStream accepted the parse job of `version` (no notify: nothing visible changed)."""
        await self._pool.execute(
            f"UPDATE {TABLE} SET job_published_at = now() WHERE id = $1 AND version = $2",
            document_id,
            version,
        )

    async def mark_deleted(self, tenant_id: str, document_id: str) -> Document:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""
                UPDATE {TABLE} SET deleted_at = now(), updated_at = now()
                WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL
                RETURNING *
                """,
                document_id,
                tenant_id,
            )
            if row is None:
                raise _not_found(document_id)
            await _notify(conn, document_id)
        return Document.from_row(row)

    async def mark_purged(self, document_id: str) -> None:
        await self._pool.execute(f"UPDATE {TABLE} SET purged_at = now() WHERE id = $1", document_id)

    async def requeue(self, tenant_id: str, document_id: str) -> Document:
        """Starts a new version: QUEUED, progress and failure cleared, its parse job not yet published."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""
                UPDATE {TABLE}
                SET version = version + 1, status = 'QUEUED', pages = 0, pages_done = 0, chunks_total = 0,
                    chunks_done = 0, error = '', failed_stage = '', job_published_at = NULL, updated_at = now()
                WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL
                RETURNING *
                """,
                document_id,
                tenant_id,
            )
            if row is None:
                raise _not_found(document_id)
            await _notify(conn, document_id)
        return Document.from_row(row)

    async def apply_report(self, tenant_id: str, document_id: str, report: ProgressReport) -> tuple[Document, Document]:
        """Applies a worker's report under a row lock (replicas report concurrently).

        Returns the document before and after the report. A deleted document is returned as it is (the
        report is ignored), so a late worker does not fail.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT * FROM {TABLE} WHERE id = $1 AND tenant_id = $2 FOR UPDATE", document_id, tenant_id
            )
            if row is None:
                raise _not_found(document_id)
            current = Document.from_row(row)
            updated = advance(current, report)
            if updated == current:
                return current, current
            row = await conn.fetchrow(
                f"""
                UPDATE {TABLE}
                SET status = $2, pages = $3, pages_done = $4, chunks_total = $5, chunks_done = $6,
                    error = $7, failed_stage = $8, updated_at = now()
                WHERE id = $1
                RETURNING *
                """,
                document_id,
                updated.status.value,
                updated.progress.pages_total,
                updated.progress.pages_done,
                updated.progress.chunks_total,
                updated.progress.chunks_done,
                updated.error,
                updated.failed_stage,
            )
            await _notify(conn, document_id)
        return current, Document.from_row(_returned(row))

    async def unpublished(self, older_than_seconds: float, limit: int = 100) -> list[Document]:
        """Live QUEUED documents whose parse job JetStream has not accepted for a while (all tenants)."""
        rows = await self._pool.fetch(
            f"""
            SELECT * FROM {TABLE}
            WHERE status = 'QUEUED' AND job_published_at IS NULL AND deleted_at IS NULL
              AND updated_at < now() - make_interval(secs => $1)
            ORDER BY updated_at LIMIT $2
            """,
            older_than_seconds,
            limit,
        )
        return [Document.from_row(row) for row in rows]

    async def unpurged(self, older_than_seconds: float, limit: int = 100) -> list[Document]:
        """Deleted documents whose original or segments could not be removed yet (all tenants)."""
        rows = await self._pool.fetch(
            f"""
            SELECT * FROM {TABLE}
            WHERE deleted_at IS NOT NULL AND purged_at IS NULL
              AND deleted_at < now() - make_interval(secs => $1)
            ORDER BY deleted_at LIMIT $2
            """,
            older_than_seconds,
            limit,
        )
        return [Document.from_row(row) for row in rows]
