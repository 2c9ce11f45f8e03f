"""Local implementations of the pipeline's dependencies, for tests: they record what they are given."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pdfchat.common import identity
from pdfchat.common.object_store import LocalObjectStore
from pdfchat.v1 import common_pb2, vector_index_pb2
from pdfchat.worker_pdf.pipeline import DocumentGone, DocumentState, Progress

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO.parent / "shared" / "data"
XQUAD_DOCS = SHARED_DATA / "qa" / "xquad"
PROBLEM_PDFS = SHARED_DATA / "pdfs"


@dataclass
class RecordingReporter:
    """Ingestion as the pipeline sees it: accepts reports, or answers that the document is gone."""

    gone: bool = False
    version: int | None = None
    """When set, the version ingestion says the document is at."""
    status: common_pb2.DocumentStatus.ValueType | None = None
    """When set, the status ingestion says the document is in."""
    fail_times: int = 0
    """Reports that raise a transient error before reports succeed."""
    reports: list[Progress] = field(default_factory=list)
    tenants: list[str | None] = field(default_factory=list)

    async def report(self, job: common_pb2.ParseJob, progress: Progress) -> DocumentState | None:
        caller = identity.current()
        self.tenants.append(caller.tenant_id if caller else None)
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("ingestion briefly unavailable")
        if self.gone:
            raise DocumentGone()
        self.reports.append(progress)
        return DocumentState(
            version=self.version if self.version is not None else job.version,
            status=self.status if self.status is not None else progress.status,
        )


@dataclass
class RecordingSink:
    segments: list[vector_index_pb2.Segment] = field(default_factory=list)
    calls: int = 0
    fail: bool = False

    async def upsert(self, segments: Sequence[vector_index_pb2.Segment]) -> None:
        if self.fail:
            raise ConnectionError("vector_index unavailable")
        self.calls += 1
        self.segments.extend(segments)


@dataclass
class RecordingPublisher:
    published: list[tuple[str, common_pb2.EmbedJob]] = field(default_factory=list)

    async def publish(self, job: common_pb2.EmbedJob, msg_id: str) -> None:
        self.published.append((msg_id, job))


@dataclass
class RecordingParsePublisher:
    """Range jobs as a local queue: records them, and keeps one copy per msg id like JetStream's window."""

    published: list[tuple[str, common_pb2.ParseJob]] = field(default_factory=list)

    async def publish(self, job: common_pb2.ParseJob, msg_id: str) -> None:
        if msg_id not in {known for known, _ in self.published}:
            self.published.append((msg_id, job))


async def store_with(root: Path, key: str, source: Path) -> LocalObjectStore:
    store = LocalObjectStore(root)
    staged = root.parent / f"staged-{source.name}"
    shutil.copyfile(source, staged)
    await store.put_file(key, staged)
    return store


def parse_job(key: str, document_id: str = "doc-1", version: int = 1, password: str = "") -> common_pb2.ParseJob:
    return common_pb2.ParseJob(
        password=password,
        tenant_id="tenant-a",
        document_id=document_id,
        version=version,
        object_key=key,
        filename=key.rsplit("/", 1)[-1],
        request_id="req-1",
    )


@contextlib.contextmanager
def as_tenant(tenant_id: str = "tenant-a") -> Iterator[None]:
    """Binds a caller identity, as the job handler does, for the calls made inside."""
    token = identity.bind(identity.Identity(tenant_id=tenant_id, request_id="req-1"))
    try:
        yield
    finally:
        identity.reset(token)
