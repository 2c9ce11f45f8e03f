"""The `vector_index.segments` table: every read and write scoped to the calling tenant.

The tenant comes from `identity.require()`, never from a request field, so a caller cannot name another
tenant; another tenant's segment looks exactly like a missing one. Segment ids are deterministic
(document, version, ordinal), which makes a redelivered parse job an overwrite instead of a duplicate.
"""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pgvector import Vector
from pgvector.asyncpg import register_vector

from pdfchat.common import identity
from pdfchat.common.errors import InvalidArgument
from pdfchat.vector_index import fts

Db: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
"""A connection, from the pool or the one a search snapshot holds."""


@dataclass(frozen=True)
class Box:
    """A rectangle on the page in PDF points, origin top-left."""

    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True)
class Segment:
    id: str
    document_id: str
    version: int
    page: int
    ordinal: int
    text: str
    boxes: tuple[Box, ...] = ()


@dataclass(frozen=True)
class SegmentVector:
    segment_id: str
    values: Sequence[float]


@dataclass(frozen=True)
class Candidate:
    """A segment id found by one retriever, with that retriever's score (higher is better)."""

    segment_id: str
    score: float


@dataclass(frozen=True)
class IndexStats:
    segments: int
    embedded: int


async def init_connection(conn: asyncpg.Connection) -> None:
    """Pool init: pgvector's binary codec for `vector`, and jsonb as Python objects."""
    await register_vector(conn)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


# A document's segments answer only in its active version (see `activate_version`): a document whose first
# version is not READY yet answers nothing, and after a reprocess the old version answers until the new one
# is activated, in one statement. Versions never mix in one result.
_ACTIVE_VERSION = """
    EXISTS (SELECT 1 FROM vector_index.active_versions a
            WHERE a.tenant_id = s.tenant_id AND a.document_id = s.document_id AND a.version = s.version)
"""
_DOCUMENT_FILTER = "(cardinality($3::text[]) = 0 OR s.document_id = ANY($3::text[]))"

VECTOR_CANDIDATES_SQL = f"""
WITH nearest AS MATERIALIZED (
    SELECT s.id, s.embedding <=> $2 AS distance
    FROM vector_index.segments s
    WHERE s.tenant_id = $1 AND s.embedding IS NOT NULL AND {_DOCUMENT_FILTER} AND {_ACTIVE_VERSION}
    ORDER BY s.embedding <=> $2
    LIMIT $4
)
SELECT id, distance FROM nearest ORDER BY distance + 0, id
"""
"""Nearest embedded segments by cosine distance. The HNSW scan runs with relaxed ordering (see
`vector_candidates`), so the materialised rows are sorted again by exact distance."""

TEXT_CANDIDATES_SQL = f"""
SELECT s.id, ts_rank_cd(s.search_text, q, 1) AS rank
FROM vector_index.segments s, to_tsquery('simple', $2) AS q
WHERE s.tenant_id = $1 AND s.search_text @@ q AND {_DOCUMENT_FILTER} AND {_ACTIVE_VERSION}
ORDER BY rank DESC, s.id
LIMIT $4
"""

_UPSERT_SEGMENTS_SQL = """
INSERT INTO vector_index.segments AS s
    (id, tenant_id, document_id, version, page, ordinal, text, boxes, search_text)
SELECT u.id, $1, u.document_id, u.version, u.page, u.ordinal, u.text, u.boxes::jsonb,
    to_tsvector('simple', u.prepared)
FROM unnest($2::uuid[], $3::text[], $4::int[], $5::int[], $6::int[], $7::text[], $8::text[], $9::text[])
    AS u(id, document_id, version, page, ordinal, text, boxes, prepared)
ON CONFLICT (id) DO UPDATE SET
    page = excluded.page,
    ordinal = excluded.ordinal,
    text = excluded.text,
    boxes = excluded.boxes,
    search_text = excluded.search_text,
    -- an embedding of different text would be wrong; the same text (a redelivery) keeps it
    embedding = CASE WHEN s.text = excluded.text THEN s.embedding END,
    model = CASE WHEN s.text = excluded.text THEN s.model END,
    updated_at = now()
WHERE s.tenant_id = excluded.tenant_id AND s.document_id = excluded.document_id AND s.version = excluded.version
RETURNING s.id
"""

_SELECT_SEGMENTS_SQL = """
SELECT s.id, s.document_id, s.version, s.page, s.ordinal, s.text, s.boxes
FROM vector_index.segments s
JOIN unnest($2::uuid[]) WITH ORDINALITY AS r(id, position) ON s.id = r.id
WHERE s.tenant_id = $1
ORDER BY r.position
"""


class SegmentStore:
    """Segments of the calling tenant's documents in Postgres."""

    def __init__(self, pool: asyncpg.Pool, *, dimensions: int, max_batch: int) -> None:
        self._pool = pool
        self.dimensions = dimensions
        self._max_batch = max_batch

    async def upsert_segments(self, segments: Sequence[Segment]) -> int:
        """Inserts or overwrites segments by id; returns how many were written.

        Raises InvalidArgument if an id already belongs to a different document or version (or to another
        tenant, which the message does not reveal); then nothing is written.
        """
        self._check_batch(len(segments), "segments")
        segments = [_validated(segment) for segment in segments]
        _check_unique([segment.id for segment in segments], "segment")
        tenant = identity.require().tenant_id
        # Postgres text cannot hold NUL, and in extracted text it carries no meaning.
        texts = [segment.text.replace("\x00", "") for segment in segments]
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _UPSERT_SEGMENTS_SQL,
                tenant,
                [segment.id for segment in segments],
                [segment.document_id for segment in segments],
                [segment.version for segment in segments],
                [segment.page for segment in segments],
                [segment.ordinal for segment in segments],
                texts,
                # JSON text, not lists: asyncpg would read nested lists as a multi-dimensional array
                [json.dumps([[b.x0, b.y0, b.x1, b.y1] for b in segment.boxes]) for segment in segments],
                [fts.prepare_document(text) for text in texts],
            )
            if len(rows) != len(segments):
                written = {str(row["id"]) for row in rows}
                taken = [segment.id for segment in segments if segment.id not in written]
                raise InvalidArgument(
                    f"{len(taken)} segment id(s) already used by another document or version: {', '.join(taken[:5])}"
                )
        return len(rows)

    async def upsert_vectors(self, vectors: Sequence[SegmentVector], model: str) -> int:
        """Sets embedding and model of the tenant's segments; returns how many segments were found.

        Ids that match no segment (a document deleted while it was being embedded) are skipped, not an error.
        """
        self._check_batch(len(vectors), "vectors")
        if not model:
            raise InvalidArgument("model is required: it records which model produced the vectors")
        ids = [_canonical_id(vector.segment_id) for vector in vectors]
        _check_unique(ids, "segment")
        for vector in vectors:
            self.check_vector(vector.values, f"vector of segment {vector.segment_id}")
        tenant = identity.require().tenant_id
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                """
                UPDATE vector_index.segments s
                SET embedding = v.embedding, model = $3, updated_at = now()
                FROM unnest($2::uuid[], $4::vector[]) AS v(id, embedding)
                WHERE s.id = v.id AND s.tenant_id = $1
                RETURNING s.id
                """,
                tenant,
                ids,
                model,
                # Vector objects, not lists: asyncpg would read nested lists as a two-dimensional array
                [Vector(list(vector.values)) for vector in vectors],
            )
        return len(rows)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Db]:
        """A connection in a read-only REPEATABLE READ transaction: the reads a search makes through it
        (candidates of both retrievers, then the segments) all see one state of the index, so a search
        that runs while a version is swapped in sees either the old version or the new one, never a mix,
        and never loses hits whose segments were deleted after they were ranked."""
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield conn

    @contextlib.asynccontextmanager
    async def _connection(self, conn: Db | None) -> AsyncIterator[Db]:
        if conn is not None:
            yield conn
            return
        async with self._pool.acquire() as acquired:
            yield acquired

    async def get_segments(self, segment_ids: Sequence[str], conn: Db | None = None) -> list[Segment]:
        """The tenant's segments with these ids, in the order asked; ids not found are left out."""
        self._check_batch(len(segment_ids), "segment ids")
        unique = list(dict.fromkeys(_canonical_id(segment_id) for segment_id in segment_ids))
        tenant = identity.require().tenant_id
        async with self._connection(conn) as db:
            rows = await db.fetch(_SELECT_SEGMENTS_SQL, tenant, unique)
        return [_segment_from_row(row) for row in rows]

    async def delete_document(self, document_id: str, keep_version: int = 0) -> int:
        """Deletes a document's segments (all versions but `keep_version` when it is set); returns the count.

        Without `keep_version` the document is gone: its active version is forgotten too, so segments a late
        worker writes afterwards never answer (ingestion's sweeper deletes them again later).
        """
        _check_document_id(document_id)
        if keep_version < 0:
            raise InvalidArgument("keep_version must be positive (or 0 to delete every version)")
        tenant = identity.require().tenant_id
        async with self._pool.acquire() as conn, conn.transaction():
            if keep_version == 0:
                await conn.execute(
                    "DELETE FROM vector_index.active_versions WHERE tenant_id = $1 AND document_id = $2",
                    tenant,
                    document_id,
                )
            deleted = await conn.fetchval(
                """
                WITH deleted AS (
                    DELETE FROM vector_index.segments
                    WHERE tenant_id = $1 AND document_id = $2 AND ($3::int = 0 OR version <> $3)
                    RETURNING 1
                )
                SELECT count(*) FROM deleted
                """,
                tenant,
                document_id,
                keep_version,
            )
        return int(deleted)

    async def activate_version(self, document_id: str, version: int) -> bool:
        """Makes `version` the one version of the document that searches see; returns whether it is active.

        Versions only move forward: activating an older version than the active one changes nothing (a late
        or repeated call after a reprocess cannot bring the old version back) and returns False.
        """
        _check_document_id(document_id)
        if version < 1:
            raise InvalidArgument("version must be 1 or more")
        tenant = identity.require().tenant_id
        async with self._pool.acquire() as conn:
            active = await conn.fetchval(
                """
                INSERT INTO vector_index.active_versions AS a (tenant_id, document_id, version)
                VALUES ($1, $2, $3)
                ON CONFLICT (tenant_id, document_id) DO UPDATE
                    SET version = excluded.version, activated_at = now()
                    WHERE a.version < excluded.version
                RETURNING a.version
                """,
                tenant,
                document_id,
                version,
            )
            if active is None:
                current = await conn.fetchval(
                    "SELECT version FROM vector_index.active_versions WHERE tenant_id = $1 AND document_id = $2",
                    tenant,
                    document_id,
                )
                return bool(current == version)
        return True

    async def active_version(self, document_id: str) -> int:
        """The version of the document that searches see; 0 when none is active."""
        _check_document_id(document_id)
        tenant = identity.require().tenant_id
        async with self._pool.acquire() as conn:
            version = await conn.fetchval(
                "SELECT version FROM vector_index.active_versions WHERE tenant_id = $1 AND document_id = $2",
                tenant,
                document_id,
            )
        return int(version or 0)

    async def stats(self, document_id: str, version: int) -> IndexStats:
        """How many segments one version of a document has, and how many of them are embedded."""
        _check_document_id(document_id)
        if version < 1:
            raise InvalidArgument("version must be 1 or more")
        tenant = identity.require().tenant_id
        async with self._pool.acquire() as conn:
            # an aggregate without GROUP BY always returns exactly one row
            [row] = await conn.fetch(
                """
                SELECT count(*) AS segments, count(embedding) AS embedded
                FROM vector_index.segments
                WHERE tenant_id = $1 AND document_id = $2 AND version = $3
                """,
                tenant,
                document_id,
                version,
            )
        return IndexStats(segments=int(row["segments"]), embedded=int(row["embedded"]))

    async def vector_candidates(
        self,
        vector: Sequence[float],
        document_ids: Sequence[str],
        limit: int,
        ef_search: int,
        conn: Db | None = None,
    ) -> list[Candidate]:
        """The `limit` nearest embedded segments; score is cosine similarity (1 - cosine distance).

        A filtered HNSW scan stops after `ef_search` neighbours and filters afterwards, which returns fewer
        rows than asked when the filter (tenant, documents) is selective. pgvector 0.8's iterative scan
        keeps scanning until the limit is met; relaxed order is faster and the query re-sorts exactly.
        """
        tenant = identity.require().tenant_id
        async with self._connection(conn) as db, db.transaction():
            await db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            await db.execute(f"SET LOCAL hnsw.ef_search = {max(int(ef_search), int(limit))}")
            rows = await db.fetch(VECTOR_CANDIDATES_SQL, tenant, list(vector), list(document_ids), limit)
        return [Candidate(str(row["id"]), 1.0 - float(row["distance"])) for row in rows]

    async def text_candidates(
        self, expression: str, document_ids: Sequence[str], limit: int, conn: Db | None = None
    ) -> list[Candidate]:
        """The `limit` best full-text matches of a tsquery expression (from `fts.query_expression`)."""
        tenant = identity.require().tenant_id
        async with self._connection(conn) as db:
            rows = await db.fetch(TEXT_CANDIDATES_SQL, tenant, expression, list(document_ids), limit)
        return [Candidate(str(row["id"]), float(row["rank"])) for row in rows]

    def check_vector(self, values: Sequence[float], what: str) -> None:
        """Raises InvalidArgument unless `values` can be compared by cosine distance with stored vectors."""
        if len(values) != self.dimensions:
            raise InvalidArgument(f"{what} has {len(values)} dimensions; this index stores {self.dimensions}")
        if not all(math.isfinite(value) for value in values):
            raise InvalidArgument(f"{what} contains NaN or infinity")
        if not any(values):
            raise InvalidArgument(f"{what} is all zeros, which has no direction to compare by cosine")

    def _check_batch(self, size: int, what: str) -> None:
        if size == 0:
            raise InvalidArgument(f"no {what} given")
        if size > self._max_batch:
            raise InvalidArgument(f"{size} {what} in one request; at most {self._max_batch} are allowed")


async def index_dimensions(pool: asyncpg.Pool) -> int:
    """Dimensions of the `embedding` column, to refuse starting with settings that disagree with it."""
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval(
                """
                SELECT atttypmod FROM pg_attribute
                WHERE attrelid = 'vector_index.segments'::regclass AND attname = 'embedding'
                """
            )
        )


def _segment_from_row(row: asyncpg.Record) -> Segment:
    return Segment(
        id=str(row["id"]),
        document_id=row["document_id"],
        version=row["version"],
        page=row["page"],
        ordinal=row["ordinal"],
        text=row["text"],
        boxes=tuple(Box(*box) for box in row["boxes"]),
    )


def _validated(segment: Segment) -> Segment:
    """The segment with its id canonical; raises InvalidArgument on a value no citation could use."""
    segment = replace(segment, id=_canonical_id(segment.id))
    _check_document_id(segment.document_id)
    if segment.version < 1:
        raise InvalidArgument(f"segment {segment.id}: version must be 1 or more")
    if segment.page < 1:
        raise InvalidArgument(f"segment {segment.id}: page is 1-based, got {segment.page}")
    if segment.ordinal < 0:
        raise InvalidArgument(f"segment {segment.id}: ordinal must not be negative")
    for box in segment.boxes:
        if not all(math.isfinite(edge) for edge in (box.x0, box.y0, box.x1, box.y1)):
            raise InvalidArgument(f"segment {segment.id}: box edges must be finite numbers")
    return segment


def _canonical_id(segment_id: str) -> str:
    """The id in Postgres' spelling (lowercase, hyphenated), so ids compare equal to those read back."""
    try:
        return str(uuid.UUID(segment_id))
    except ValueError:
        raise InvalidArgument(f"segment id {segment_id!r} is not a UUID") from None


def _check_document_id(document_id: str) -> None:
    if not document_id:
        raise InvalidArgument("document_id is required")


def _check_unique(ids: Sequence[str], what: str) -> None:
    if len(set(ids)) != len(ids):
        raise InvalidArgument(f"{what} ids must be unique within one request")
