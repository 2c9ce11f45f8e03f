"""Documents: their record, the stage state machine, and their table (schema `ingestion`).

A document moves QUEUED -> PARSING -> EMBEDDING -> READY, or to FAILED from any stage. Each upload or
reprocess starts a new `version`; workers report progress for the version their job names, so reports
of an older version (a job still running when the document was reprocessed) change nothing.

The stage is derived, not taken from the reports: parse and embed run concurrently (embed batches start
while later page ranges are still parsing), and every job may be delivered more than once, so reports
arrive duplicated and out of order. Ingestion records each finished page range once (see `ranges`) and
decides: PARSING until the ranges cover every page, then EMBEDDING until the embedded count reaches the
segment count of all ranges, then READY (at once when the ranges produced no segments: a document without
text). Only FAILED is taken as reported. Counters never decrease within a version.

Every change commits together with `pg_notify('ingestion_documents', id)`, which is what watchers
(see `watch`) wake up on, in this replica or any other; a version that becomes READY or FAILED with a
callback URL also writes its outcome to the callback outbox in the same transaction (see `callbacks`).
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
from pdfchat.ingestion.callbacks import outcome_body
from pdfchat.ingestion.ranges import PageRange, coverage

NOTIFY_CHANNEL = "ingestion_documents"
TABLE = "ingestion.documents"
RANGES = "ingestion.page_ranges"
CALLBACKS = "ingestion.callback_deliveries"


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
    parse_attempts: int = 1
    """How often the parse job of this version was published by the reconciler (the first publish counts)."""
    activated_version: int = 0
    """The version vector_index answers with; 0 before the first READY version was activated."""

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
            parse_attempts=row["parse_attempts"],
            activated_version=row["activated_version"],
        )


@dataclass(frozen=True)
class ProgressReport:
    """What a worker says about one version of a document."""

    version: int
    status: DocumentStatus
    progress: Progress = Progress()
    error: str = ""
    failed_stage: str = ""
    range_result: PageRange | None = None
    """Set when a page range finished parsing."""


def advance(document: Document, report: ProgressReport, ranges: Sequence[PageRange] = ()) -> Document:
    """The document after `report`, given the finished page ranges of its version (`report`'s included).

    Returns the same document when the report must change nothing: reports for another version, for a
    deleted document, and any report once the version is READY or FAILED. The page count is the first one
    reported; pages done and, once parsing is complete, the segment count come from `ranges`; the embedded
    count is the largest reported (embedding reports absolute counts). The reported status counts only when
    it is FAILED (see the module docstring).

    Raises:
        InvalidArgument: the report names a status a worker cannot report (QUEUED).
    """
    if report.status not in REPORTABLE:
        raise InvalidArgument(f"a progress report cannot set status {report.status.value}")
    if document.is_deleted or report.version != document.version or document.is_final:
        return document
    current, reported = document.progress, report.progress
    pages_total = current.pages_total or reported.pages_total
    parsed = coverage(ranges, pages_total)
    chunks_done = max(current.chunks_done, reported.chunks_done)
    if parsed.complete:
        chunks_total = parsed.segments
    else:
        # embedding counts the segments stored so far: a lower bound while pages are still being parsed
        chunks_total = max(current.chunks_total, reported.chunks_total, parsed.segments)
    progress = Progress(
        pages_total=pages_total,
        pages_done=max(current.pages_done, parsed.pages_done),
        chunks_total=chunks_total,
        chunks_done=chunks_done,
    )
    error, failed_stage = document.error, document.failed_stage
    if report.status == DocumentStatus.FAILED:
        status = DocumentStatus.FAILED
        error = report.error.strip() or "processing failed"
        failed_stage = report.failed_stage.strip()
    elif parsed.complete:
        status = DocumentStatus.READY if chunks_done >= chunks_total else DocumentStatus.EMBEDDING
    else:
        status = DocumentStatus.PARSING
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
    password_encrypted: str | None = None


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


async def _save(conn: Any, before: Document, updated: Document) -> Document:
    """Writes a document's new state in the caller's transaction, wakes watchers, and queues the outcome
    callback when the version has just become final."""
    row = await conn.fetchrow(
        f"""
        UPDATE {TABLE}
        SET status = $2, pages = $3, pages_done = $4, chunks_total = $5, chunks_done = $6,
            error = $7, failed_stage = $8, updated_at = now()
        WHERE id = $1
        RETURNING *
        """,
        updated.id,
        updated.status.value,
        updated.progress.pages_total,
        updated.progress.pages_done,
        updated.progress.chunks_total,
        updated.progress.chunks_done,
        updated.error,
        updated.failed_stage,
    )
    saved = Document.from_row(_returned(row))
    await _notify(conn, saved.id)
    if saved.is_final and not before.is_final and saved.callback_url:
        await conn.execute(
            f"""
            INSERT INTO {CALLBACKS} (tenant_id, document_id, version, url, body)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (document_id, version) DO NOTHING
            """,
            saved.tenant_id,
            saved.id,
            saved.version,
            saved.callback_url,
            outcome_body(saved),
        )
    return saved


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
                                     object_key, idempotency_key, callback_url, password_encrypted)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
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
                new.password_encrypted,
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

    async def mark_deleted(self, tenant_id: str, document_id: str, sweep_delay_seconds: float = 0.0) -> Document:
        """Hides the document and schedules a second clean-up of its segments after `sweep_delay_seconds`."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""
                UPDATE {TABLE}
                SET deleted_at = now(), updated_at = now(), sweep_after = now() + make_interval(secs => $3)
                WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL
                RETURNING *
                """,
                document_id,
                tenant_id,
                sweep_delay_seconds,
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
                    chunks_done = 0, error = '', failed_stage = '', job_published_at = NULL, parse_attempts = 1,
                    updated_at = now()
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

        A page range in the report is recorded once (a repeated report of the same range changes nothing).
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
            if current.is_deleted or report.version != current.version or current.is_final:
                return current, current
            if report.range_result is not None:
                finished = report.range_result.check()
                await conn.execute(
                    f"""
                    INSERT INTO {RANGES} (document_id, version, page_start, page_end, segments, tenant_id)
                    VALUES ($1, $2, $3, $4, $5, $6)
                    ON CONFLICT (document_id, version, page_start) DO NOTHING
                    """,
                    document_id,
                    current.version,
                    finished.start,
                    finished.end,
                    finished.segments,
                    tenant_id,
                )
            ranges = [
                PageRange(r["page_start"], r["page_end"], r["segments"])
                for r in await conn.fetch(
                    f"SELECT page_start, page_end, segments FROM {RANGES} WHERE document_id = $1 AND version = $2",
                    document_id,
                    current.version,
                )
            ]
            updated = advance(current, report, ranges)
            if updated == current:
                return current, current
            saved = await _save(conn, current, updated)
        return current, saved

    async def stuck(self, older_than_seconds: float, limit: int = 100) -> list[Document]:
        """Live documents in a non-final state without any change for a while (all tenants)."""
        rows = await self._pool.fetch(
            f"""
            SELECT * FROM {TABLE}
            WHERE status IN ('QUEUED', 'PARSING', 'EMBEDDING') AND deleted_at IS NULL
              AND updated_at < now() - make_interval(secs => $1)
            ORDER BY updated_at LIMIT $2
            """,
            older_than_seconds,
            limit,
        )
        return [Document.from_row(row) for row in rows]

    async def count_republish(self, document: Document) -> Document | None:
        """Counts one more publish of the version's parse job and restarts its deadline.

        None when the document changed meanwhile (another replica's reconciler took it, or a report
        arrived): then it is not stuck, or not ours to republish.
        """
        row = await self._pool.fetchrow(
            f"""
            UPDATE {TABLE} SET parse_attempts = parse_attempts + 1, updated_at = now()
            WHERE id = $1 AND version = $2 AND updated_at = $3 AND deleted_at IS NULL
              AND status IN ('QUEUED', 'PARSING', 'EMBEDDING')
            RETURNING *
            """,
            document.id,
            document.version,
            document.updated_at,
        )
        return None if row is None else Document.from_row(row)

    async def password_token(self, document_id: str) -> str | None:
        """The encrypted upload password of the document, if it has one."""
        return await self._pool.fetchval(f"SELECT password_encrypted FROM {TABLE} WHERE id = $1", document_id)

    async def unactivated(self, limit: int = 100) -> list[Document]:
        """Live READY documents whose version vector_index does not answer with yet (all tenants)."""
        rows = await self._pool.fetch(
            f"""
            SELECT * FROM {TABLE}
            WHERE status = 'READY' AND deleted_at IS NULL AND activated_version < version
            ORDER BY updated_at LIMIT $1
            """,
            limit,
        )
        return [Document.from_row(row) for row in rows]

    async def mark_activated(self, document_id: str, version: int, sweep_delay_seconds: float) -> None:
        """Records the swap to `version` and schedules a second sweep of the other versions' segments."""
        await self._pool.execute(
            f"""
            UPDATE {TABLE}
            SET activated_version = greatest(activated_version, $2),
                sweep_after = now() + make_interval(secs => $3)
            WHERE id = $1
            """,
            document_id,
            version,
            sweep_delay_seconds,
        )

    async def sweeps_due(self, limit: int = 100) -> list[Document]:
        """Documents, deleted or live, whose segments are to be swept again now (all tenants)."""
        rows = await self._pool.fetch(
            f"SELECT * FROM {TABLE} WHERE sweep_after <= now() ORDER BY sweep_after LIMIT $1",
            limit,
        )
        return [Document.from_row(row) for row in rows]

    async def mark_swept(self, document_id: str) -> None:
        # only a sweep that is due: one scheduled meanwhile (a new swap) stays
        await self._pool.execute(
            f"UPDATE {TABLE} SET sweep_after = NULL WHERE id = $1 AND sweep_after <= now()", document_id
        )

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
