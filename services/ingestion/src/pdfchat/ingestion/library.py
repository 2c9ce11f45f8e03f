"""The document library: what the IngestionService does, without gRPC.

Guarantees the rest of the suite relies on:

- An upload is stored and committed before its parse job is published; a job that JetStream did not
  accept is re-published by the reconciler (`reconcile()`), so no document stays QUEUED silently.
- A duplicate upload (same tenant, same bytes, or the same idempotency key) returns the live document it
  duplicates instead of creating another.
- Deleting hides the document at once; removing its original and its segments is retried by the
  reconciler until it succeeds, so a deleted document stops answering even if vector_index was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from pdfchat.common import identity
from pdfchat.common.identity import Identity
from pdfchat.common.object_store import ObjectStore
from pdfchat.ingestion import uploads
from pdfchat.ingestion.documents import (
    Document,
    DocumentRepository,
    DocumentStatus,
    NewDocument,
    Page,
    ProgressReport,
)
from pdfchat.ingestion.watch import DocumentChanges

log = logging.getLogger(__name__)

DEFAULT_CONTENT_TYPE = "application/pdf"


class SegmentIndex(Protocol):
    """The part of vector_index the library needs."""

    async def delete_document_segments(self, document_id: str, keep_version: int = 0) -> None:
        """Deletes the document's segments; with keep_version, only those of other versions."""


class JobPublisher(Protocol):
    async def publish(self, document: Document, request_id: str) -> None: ...


@dataclass(frozen=True)
class UploadRequest:
    filename: str
    content_type: str = DEFAULT_CONTENT_TYPE
    idempotency_key: str = ""
    callback_url: str = ""


@dataclass(frozen=True)
class UploadResult:
    document: Document
    created: bool


def object_key_of(tenant_id: str, document_id: str) -> str:
    return f"{tenant_id}/{document_id}/original.pdf"


class DocumentLibrary:
    def __init__(
        self,
        repository: DocumentRepository,
        store: ObjectStore,
        jobs: JobPublisher,
        segments: SegmentIndex,
        changes: DocumentChanges,
        *,
        max_upload_bytes: int,
        upload_temp_dir: str | None = None,
        watch_resync_seconds: float = 15.0,
    ) -> None:
        self._documents = repository
        self._store = store
        self._jobs = jobs
        self._segments = segments
        self._changes = changes
        self._max_upload_bytes = max_upload_bytes
        self._upload_temp_dir = upload_temp_dir
        self._watch_resync_seconds = watch_resync_seconds

    async def upload(self, caller: Identity, request: UploadRequest, chunks: AsyncIterable[bytes]) -> UploadResult:
        """Stores a new original and queues it for parsing, or returns the live document it duplicates."""
        key = request.idempotency_key.strip() or None
        if key is not None and (earlier := await self._documents.find_by_idempotency_key(caller.tenant_id, key)):
            # A retried request: answer as the first attempt did, without reading the bytes again.
            return UploadResult(earlier, created=False)
        async with uploads.receive(
            chunks, max_bytes=self._max_upload_bytes, temp_dir=self._upload_temp_dir
        ) as received:
            if same := await self._documents.find_by_sha256(caller.tenant_id, received.sha256):
                return UploadResult(same, created=False)
            document_id = str(uuid.uuid4())
            object_key = object_key_of(caller.tenant_id, document_id)
            await self._store.put_file(object_key, received.path)
            new = NewDocument(
                id=document_id,
                tenant_id=caller.tenant_id,
                user_id=caller.user_id,
                filename=uploads.clean_filename(request.filename),
                content_type=request.content_type.strip() or DEFAULT_CONTENT_TYPE,
                size_bytes=received.size_bytes,
                sha256=received.sha256,
                object_key=object_key,
                idempotency_key=key,
                callback_url=request.callback_url.strip(),
            )
            try:
                document = await self._documents.insert(new)
            except asyncpg.UniqueViolationError:
                # A concurrent upload of the same file (or key) committed first: answer with its document.
                await self._store.delete(object_key)
                winner = await self._find_duplicate(caller.tenant_id, received.sha256, key)
                if winner is None:
                    raise
                return UploadResult(winner, created=False)
        await self._publish(document, caller.request_id)
        return UploadResult(document, created=True)

    async def _find_duplicate(self, tenant_id: str, sha256: str, key: str | None) -> Document | None:
        if key is not None and (by_key := await self._documents.find_by_idempotency_key(tenant_id, key)):
            return by_key
        return await self._documents.find_by_sha256(tenant_id, sha256)

    async def _publish(self, document: Document, request_id: str) -> bool:
        """Publishes the parse job; a failure is logged and left to the reconciler (the row is committed)."""
        try:
            await self._jobs.publish(document, request_id)
        except Exception as exc:
            log.warning(
                "parse job for document %s v%d not published, the reconciler will retry: %r",
                document.id,
                document.version,
                exc,
            )
            return False
        await self._documents.mark_published(document.id, document.version)
        return True

    async def get(self, tenant_id: str, document_id: str) -> Document:
        return await self._documents.get(tenant_id, document_id)

    async def list_documents(self, tenant_id: str, page_size: int = 0, page_token: str = "") -> Page:
        return await self._documents.list_page(tenant_id, page_size, page_token)

    async def delete(self, tenant_id: str, document_id: str) -> None:
        """Hides the document at once, then removes its original and segments (retried later if that fails)."""
        document = await self._documents.mark_deleted(tenant_id, document_id)
        await self._purge(document)

    async def _purge(self, document: Document) -> bool:
        try:
            await self._store.delete(document.object_key)
            await self._segments.delete_document_segments(document.id)
        except Exception as exc:
            log.warning("clean-up of deleted document %s failed, the reconciler will retry: %r", document.id, exc)
            return False
        await self._documents.mark_purged(document.id)
        return True

    async def reprocess(self, caller: Identity, document_id: str) -> Document:
        """Starts a new version from the stored original; reports for older versions are ignored from now on."""
        document = await self._documents.requeue(caller.tenant_id, document_id)
        await self._publish(document, caller.request_id)
        return document

    async def report_progress(self, tenant_id: str, document_id: str, report: ProgressReport) -> Document:
        """Applies a worker's report (see `documents.advance` for what is ignored) and returns the document."""
        before, document = await self._documents.apply_report(tenant_id, document_id, report)
        became_ready = document.status == DocumentStatus.READY and before.status != DocumentStatus.READY
        if became_ready and document.version > 1:
            # The new version answers now: drop the segments of the versions before it.
            try:
                await self._segments.delete_document_segments(document.id, keep_version=document.version)
            except Exception as exc:
                log.warning("could not drop older segments of document %s: %r", document.id, exc)
        return document

    async def watch(self, tenant_id: str, document_id: str) -> AsyncIterator[Document]:
        """The document now, then each change, until it is READY or FAILED.

        Raises:
            NotFound: the document is missing, another tenant's, or deleted (also while watching).
        """
        with self._changes.subscribe(document_id) as changed:
            # Subscribed before the first read: a change committed in between still wakes us.
            document = await self._documents.get(tenant_id, document_id)
            yield document
            while not document.is_final:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), self._watch_resync_seconds)
                changed.clear()
                latest = await self._documents.get(tenant_id, document_id)
                if latest != document:
                    document = latest
                    yield document

    async def reconcile(self, older_than_seconds: float) -> tuple[int, int]:
        """Re-publishes stuck parse jobs and retries failed clean-ups; returns (published, purged)."""
        published = purged = 0
        for document in await self._documents.unpublished(older_than_seconds):
            log.info("re-publishing parse job for document %s v%d", document.id, document.version)
            published += await self._publish(document, uuid.uuid4().hex)
        for document in await self._documents.unpurged(older_than_seconds):
            # vector_index scopes by tenant: call it as the document's tenant.
            token = identity.bind(Identity(tenant_id=document.tenant_id))
            try:
                purged += await self._purge(document)
            finally:
                identity.reset(token)
        return published, purged


async def run_reconciler(
    library: DocumentLibrary, stop: asyncio.Event, *, interval_seconds: float, older_than_seconds: float
) -> None:
    """Calls `reconcile()` every `interval_seconds` until `stop` is set (a ServiceSpec background task)."""
    while not stop.is_set():
        try:
            await library.reconcile(older_than_seconds)
        except Exception:
            log.exception("reconciler pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)
