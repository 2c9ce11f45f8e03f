"""Fixtures of the ingestion tests: a migrated pool, the library wired to real Postgres and NATS, and a
reader of the parse jobs it publishes.

The tests publish to their own JetStream namespace (derived from the session's `jobs_namespace`), so a
worker_pdf started by another service's tests in the same session can never take a job these tests wait
for, and these tests' consumer never collides with its consumer on the work-queue stream.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from nats.js.client import JetStreamContext

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingestion_support import FakeSegmentIndex, FlakyPublisher, Harness, ParseJobs

from pdfchat.common import db, jetstream
from pdfchat.common.jetstream import JobQueues
from pdfchat.common.object_store import LocalObjectStore
from pdfchat.ingestion.__main__ import MIGRATIONS_DIR, SCHEMA
from pdfchat.ingestion.documents import DocumentRepository
from pdfchat.ingestion.jobs import ParseJobPublisher
from pdfchat.ingestion.library import DocumentLibrary
from pdfchat.ingestion.watch import DocumentChanges
from pdfchat_tools import infra

SAMPLE_PDF = Path(__file__).resolve().parents[4] / "shared" / "data" / "qa" / "xquad" / "en" / "docs"


@pytest.fixture
def tenant() -> str:
    """A tenant of its own for each test, so identical files in different tests never deduplicate."""
    return f"tenant-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def sample_pdf() -> Path:
    path = SAMPLE_PDF / "xquad_01_Warsaw.pdf"
    if not path.exists():
        pytest.fail(f"sample PDF not found at {path}")
    return path


@pytest.fixture(scope="session")
def ingestion_jobs_namespace(jobs_namespace: str, nats_url: str) -> Iterator[str]:
    namespace = f"{jobs_namespace}ing"
    yield namespace

    asyncio.run(infra.delete_streams(nats_url, namespace))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await db.create_pool(database_url, min_size=1, max_size=8)
    await db.migrate(created, SCHEMA, MIGRATIONS_DIR)
    yield created
    await created.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def js(nats_url: str, ingestion_jobs_namespace: str) -> AsyncIterator[JetStreamContext]:
    client = await jetstream.connect(nats_url, "ingestion-tests")
    context = client.jetstream()
    await jetstream.ensure_streams(context, JobQueues(ingestion_jobs_namespace))
    yield context
    await client.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def parse_jobs(js: JetStreamContext, ingestion_jobs_namespace: str) -> ParseJobs:
    queues = JobQueues(ingestion_jobs_namespace)
    subscription = await js.pull_subscribe(queues.parse_subject, durable="ingestion-tests", stream=queues.jobs_stream)
    return ParseJobs(subscription)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def changes(database_url: str) -> AsyncIterator[DocumentChanges]:
    listener = DocumentChanges(database_url)
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    await asyncio.wait_for(listener.wait_listening(), 10)
    yield listener
    stop.set()
    await asyncio.wait_for(task, 10)


@pytest.fixture
def harness(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    changes: DocumentChanges,
    ingestion_jobs_namespace: str,
    tmp_path: Path,
) -> Harness:
    repository = DocumentRepository(pool)
    store = LocalObjectStore(tmp_path / "objects")
    segments = FakeSegmentIndex()
    publisher = FlakyPublisher(ParseJobPublisher(js, JobQueues(ingestion_jobs_namespace)))
    library = DocumentLibrary(
        repository,
        store,
        publisher,
        segments,
        changes,
        max_upload_bytes=1024 * 1024,
        upload_temp_dir=str(tmp_path / "spool"),
        watch_resync_seconds=30.0,
    )
    return Harness(library, repository, store, segments, publisher)
