"""Fixtures of the vector_index tests: a migrated pool on the session's database, a store and a search on
it, and helpers to act as a tenant and to build segments and vectors.

Every test works as tenants of its own (`tenant` fixture), so tests sharing the session database never see
each other's segments.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import numpy as np
import pytest
import pytest_asyncio

from pdfchat.common import db, identity
from pdfchat.vector_index.__main__ import MIGRATIONS, SCHEMA
from pdfchat.vector_index.search import HybridSearch
from pdfchat.vector_index.settings import VectorIndexSettings
from pdfchat.vector_index.store import Box, Segment, SegmentStore, init_connection

DIMENSIONS = 384


@contextlib.contextmanager
def acting_as(tenant_id: str) -> Iterator[None]:
    """Binds the identity the server interceptor would bind for a call from `tenant_id`."""
    token = identity.bind(identity.Identity(tenant_id=tenant_id))
    try:
        yield
    finally:
        identity.reset(token)


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


def segment_id(document_id: str, version: int, ordinal: int) -> str:
    """Deterministic like the worker's ids: the same (document, version, ordinal) always gives the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{document_id}/{version}/{ordinal}"))


def make_segment(document_id: str, ordinal: int, text: str, *, version: int = 1, page: int = 1) -> Segment:
    return Segment(
        id=segment_id(document_id, version, ordinal),
        document_id=document_id,
        version=version,
        page=page,
        ordinal=ordinal,
        text=text,
        boxes=(Box(10.0, 20.0, 300.0, 40.0),),
    )


def unit_vector(seed: int) -> list[float]:
    """A random direction, the same for the same seed."""
    values = np.random.default_rng(seed).standard_normal(DIMENSIONS)
    return [float(v) for v in values / np.linalg.norm(values)]


def near(vector: list[float], seed: int, noise: float = 0.05) -> list[float]:
    """A vector close to `vector` (cosine similarity near 1)."""
    jitter = np.random.default_rng(seed).standard_normal(DIMENSIONS) * noise / np.sqrt(DIMENSIONS)
    values = np.asarray(vector) + jitter
    return [float(v) for v in values / np.linalg.norm(values)]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await db.create_pool(database_url, min_size=1, max_size=8, init=init_connection)
    await db.migrate(created, SCHEMA, MIGRATIONS)
    yield created
    await created.close()


@pytest.fixture
def settings() -> VectorIndexSettings:
    return VectorIndexSettings()


@pytest.fixture
def store(pool: asyncpg.Pool, settings: VectorIndexSettings) -> SegmentStore:
    return SegmentStore(pool, dimensions=settings.embedding_dimensions, max_batch=settings.max_batch)


@pytest.fixture
def search(store: SegmentStore, settings: VectorIndexSettings) -> HybridSearch:
    return HybridSearch(store, settings)
