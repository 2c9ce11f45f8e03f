"""The document library: what the IngestionService does, without gRPC.

Guarantees the rest of the suite relies on:

- An upload is stored and committed before its parse job is published; a job that JetStream did not
  accept is re-published by the reconciler (`reconcile()`), so no document stays QUEUED silently.
- A duplicate upload (same tenant, same bytes, or the same idempotency key) returns the live document it
  duplicates instead of creating another.
- No document stays QUEUED, PARSING or EMBEDDING forever: one without progress for
  `stuck_after_seconds` gets its parse job published again (every stage is idempotent), at most
  `max_parse_attempts` times in all, and is then FAILED with a reason naming the stage it was stuck in.
  A job that lands in the dead-letter stream FAILs its document too (`record_dead_letter`).
- A READY version is swapped in at vector_index (`ActivateVersion`, then the other versions' segments
  deleted); until then searches see the previous version, or nothing for a first version. A failed swap is
  retried by the reconciler.
- Deleting hides the document at once; removing its original and its segments is retried by the
  reconciler until it succeeds, so a deleted document stops answering even if vector_index was down.
  `sweep_delay_seconds` later the segments are deleted once more (the orphan sweep), removing what a
  worker racing the delete wrote after it; the same sweep follows a version swap.
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
from google.protobuf.message import DecodeError

from pdfchat.common import identity
from pdfchat.common.errors import NotFound, PayloadTooLarge
from pdfchat.common.events import DocumentChanged
from pdfchat.common.identity import Identity
from pdfchat.common.object_store import ObjectStore
from pdfchat.ingestion import uploads
from pdfchat.ingestion.callbacks import check_callback_url
from pdfchat.ingestion.documents import (
    Document,
    DocumentRepository,
    DocumentStatus,
    NewDocument,
    Page,
    ProgressReport,
)
from pdfchat.ingestion.page_count import PageCounter
from pdfchat.ingestion.passwords import PasswordBox
from pdfchat.ingestion.watch import DocumentChanges
from pdfchat.v1 import common_pb2

log = logging.getLogger(__name__)

DEFAULT_CONTENT_TYPE = "application/pdf"


class SegmentIndex(Protocol):
    """The part of vector_index the library needs."""

    async def delete_document_segments(self, document_id: str, keep_version: int = 0) -> None:
        """Deletes the document's segments; with keep_version, only those of other versions."""

    async def activate_version(self, document_id: str, version: int) -> None:
        """Makes `version` the one version of the document that searches see."""


class JobPublisher(Protocol):
    async def publish(self, document: Document, request_id: str, password: str = "") -> None: ...

    async def announce(self, event: DocumentChanged) -> None: ...


@dataclass(frozen=True)
class UploadRequest:
    filename: str
    content_type: str = DEFAULT_CONTENT_TYPE
    idempotency_key: str = ""
    callback_url: str = ""
    password: str = ""


@dataclass(frozen=True)
class Lifecycle:
    """Deadlines of the reconciler (see the module docstring)."""

    stuck_after_seconds: float = 900.0
    max_parse_attempts: int = 3
    sweep_delay_seconds: float = 900.0


@dataclass
class ReconcileResult:
    published: int = 0
    republished: int = 0
    failed: int = 0
    purged: int = 0
    activated: int = 0
    swept: int = 0


_STAGE_OF_STATUS = {
    DocumentStatus.QUEUED: "parse",
    DocumentStatus.PARSING: "parse",
    DocumentStatus.EMBEDDING: "embed",
}


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
        max_upload_pages: int = 2000,
        page_counter: PageCounter | None = None,
        upload_temp_dir: str | None = None,
        watch_resync_seconds: float = 15.0,
        passwords: PasswordBox | None = None,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self._documents = repository
        self._store = store
        self._jobs = jobs
        self._segments = segments
        self._changes = changes
        self._max_upload_bytes = max_upload_bytes
        self._max_upload_pages = max_upload_pages
        self._page_counter = page_counter or PageCounter()
        self._upload_temp_dir = upload_temp_dir
        self._watch_resync_seconds = watch_resync_seconds
        self._passwords = passwords or PasswordBox("")
        self._lifecycle = lifecycle or Lifecycle()

    async def upload(self, caller: Identity, request: UploadRequest, chunks: AsyncIterable[bytes]) -> UploadResult:
        """Stores a new original and queues it for parsing, or returns the live document it duplicates."""
        key = request.idempotency_key.strip() or None
        callback_url = check_callback_url(request.callback_url)
        if key is not None and (earlier := await self._documents.find_by_idempotency_key(caller.tenant_id, key)):
            # A retried request: answer as the first attempt did, without reading the bytes again.
            return UploadResult(earlier, created=False)
        async with uploads.receive(
            chunks, max_bytes=self._max_upload_bytes, temp_dir=self._upload_temp_dir
        ) as received:
            if same := await self._documents.find_by_sha256(caller.tenant_id, received.sha256):
                return UploadResult(same, created=False)
            pages = await self._page_counter.count(received.path)
            if pages is not None and pages > self._max_upload_pages:
                raise PayloadTooLarge(f"the PDF has {pages} pages, more than the limit of {self._max_upload_pages}")
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
                callback_url=callback_url,
                password_encrypted=self._passwords.seal(request.password),
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
        await self._publish(document, caller.request_id, request.password)
        return UploadResult(document, created=True)

    async def _find_duplicate(self, tenant_id: str, sha256: str, key: str | None) -> Document | None:
        if key is not None and (by_key := await self._documents.find_by_idempotency_key(tenant_id, key)):
            return by_key
        return await self._documents.find_by_sha256(tenant_id, sha256)

    async def _publish(self, document: Document, request_id: str, password: str | None = None) -> bool:
        """Publishes the parse job; a failure is logged and left to the reconciler (the row is committed).

        `password` None reads the stored (encrypted) one.
        """
        try:
            if password is None:
                password = self._passwords.open(await self._documents.password_token(document.id))
            await self._jobs.publish(document, request_id, password)
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
        document = await self._documents.mark_deleted(tenant_id, document_id, self._lifecycle.sweep_delay_seconds)
        await self._announce(DocumentChanged(tenant_id, document_id, "deleted"))
        await self._purge(document)

    async def _announce(self, event: DocumentChanged) -> None:
        """Best effort: a lost event only leaves cached answers no new request can hit (keys carry versions)."""
        try:
            await self._jobs.announce(event)
        except Exception as exc:
            log.warning("could not announce %s of document %s: %r", event.change, event.document_id, exc)

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
        if document.status == DocumentStatus.READY and before.status != DocumentStatus.READY:
            await self._activate(document)
        return document

    async def _activate(self, document: Document) -> bool:
        """Swaps the READY version in at vector_index, then drops the other versions' segments.

        A failure is logged and left to the reconciler: until the swap succeeds, searches keep answering
        with the previous version (or not at all for a first version), never with a mix.
        """
        # vector_index scopes by tenant: call it as the document's tenant (also from the reconciler).
        token = identity.bind(Identity(tenant_id=document.tenant_id))
        try:
            await self._segments.activate_version(document.id, document.version)
            await self._segments.delete_document_segments(document.id, keep_version=document.version)
        except Exception as exc:
            log.warning(
                "could not activate document %s v%d, the reconciler will retry: %r", document.id, document.version, exc
            )
            return False
        finally:
            identity.reset(token)
        await self._documents.mark_activated(document.id, document.version, self._lifecycle.sweep_delay_seconds)
        if document.version > 1:
            await self._announce(DocumentChanged(document.tenant_id, document.id, "reprocessed", document.version))
        return True

    async def record_dead_letter(self, kind: str, payload: bytes, reason: str) -> Document | None:
        """FAILs the document of a dead-lettered job, naming the stage and the reason.

        The safety net behind the workers, which report FAILED themselves on a job's last delivery: a final
        document, another version's job or a deleted document is left as it is. Returns the document, or
        None when the job names none this service knows.
        """
        job: common_pb2.ParseJob | common_pb2.EmbedJob
        try:
            job = (
                common_pb2.EmbedJob.FromString(payload) if kind == "embed" else common_pb2.ParseJob.FromString(payload)
            )
        except DecodeError:
            log.warning("dead-lettered %s job is not a job message; ignored", kind)
            return None
        if not job.tenant_id or not job.document_id:
            log.warning("dead-lettered %s job names no document; ignored", kind)
            return None
        where = ""
        if isinstance(job, common_pb2.ParseJob) and job.page_start > 0:
            where = f" (pages {job.page_start}-{job.page_end})"
        error = f"{kind} job{where} failed for good: {reason or 'dead-lettered'}"
        try:
            return await self.report_progress(
                job.tenant_id,
                job.document_id,
                ProgressReport(job.version, DocumentStatus.FAILED, error=error[:1000], failed_stage=kind),
            )
        except NotFound:
            return None

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

    async def reconcile(self, older_than_seconds: float) -> ReconcileResult:
        """One pass of the reconciler over all tenants (see the module docstring)."""
        result = ReconcileResult()
        for document in await self._documents.unpublished(older_than_seconds):
            log.info("re-publishing parse job for document %s v%d", document.id, document.version)
            result.published += await self._publish(document, uuid.uuid4().hex)
        for document in await self._documents.stuck(self._lifecycle.stuck_after_seconds):
            if await self._unstick(document):
                result.republished += 1
            else:
                result.failed += 1
        for document in await self._documents.unpurged(older_than_seconds):
            # vector_index scopes by tenant: call it as the document's tenant.
            token = identity.bind(Identity(tenant_id=document.tenant_id))
            try:
                result.purged += await self._purge(document)
            finally:
                identity.reset(token)
        for document in await self._documents.unactivated():
            result.activated += await self._activate(document)
        for document in await self._documents.sweeps_due():
            result.swept += await self._sweep(document)
        return result

    async def _unstick(self, document: Document) -> bool:
        """Publishes a stuck document's parse job again, or FAILs it once the attempts are used up.

        Returns True when it was published again (or another replica took it), False when it FAILED.
        """
        attempts = self._lifecycle.max_parse_attempts
        if document.parse_attempts >= attempts:
            stage = _STAGE_OF_STATUS.get(document.status, "parse")
            reason = (
                f"stuck in {document.status.value} with no progress for {self._lifecycle.stuck_after_seconds:g} s "
                f"after {document.parse_attempts} attempt(s)"
            )
            log.warning("document %s v%d %s; marking it FAILED", document.id, document.version, reason)
            await self.report_progress(
                document.tenant_id,
                document.id,
                ProgressReport(document.version, DocumentStatus.FAILED, error=reason, failed_stage=stage),
            )
            return False
        counted = await self._documents.count_republish(document)
        if counted is not None:
            log.warning(
                "document %s v%d stuck in %s; publishing its parse job again (attempt %d of %d)",
                document.id,
                document.version,
                document.status.value,
                counted.parse_attempts,
                attempts,
            )
            await self._publish(counted, uuid.uuid4().hex)
        return True

    async def _sweep(self, document: Document) -> bool:
        """Deletes a document's stale segments once more: all of a deleted one's, the inactive versions' of a
        live one (skipped while a newer version is in flight: its own swap sweeps later)."""
        if not document.is_deleted and document.version != document.activated_version:
            await self._documents.mark_swept(document.id)
            return False
        keep = 0 if document.is_deleted else document.activated_version
        token = identity.bind(Identity(tenant_id=document.tenant_id))
        try:
            await self._segments.delete_document_segments(document.id, keep_version=keep)
        except Exception as exc:
            log.warning("sweep of document %s failed, will retry: %r", document.id, exc)
            return False
        finally:
            identity.reset(token)
        await self._documents.mark_swept(document.id)
        return True


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
