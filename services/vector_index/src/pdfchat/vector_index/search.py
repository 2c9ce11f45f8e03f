"""Hybrid search: nearest vectors and full-text matches, fused by reciprocal rank.

Vectors find paraphrases; full text finds exact names, numbers and rare terms that embeddings blur. Each
retriever contributes its best candidates under the same filter (the tenant, the requested documents, and
only the active version of each document, see `store`), and `fusion` merges the two lists by rank. Either
part of the query may be missing: a query without a vector is full text only, and the other way round.
Full-text candidates need no embedding, so a document whose vectors are still being computed already
answers exact-term queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pdfchat.common.errors import InvalidArgument
from pdfchat.vector_index import fts
from pdfchat.vector_index.fusion import reciprocal_rank_fusion
from pdfchat.vector_index.settings import VectorIndexSettings
from pdfchat.vector_index.store import Candidate, Db, Segment, SegmentStore

DEFAULT_TOP_K = 8
MAX_TOP_K = 50


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    vector: Sequence[float] = ()
    document_ids: Sequence[str] = ()
    top_k: int = 0
    """0 means DEFAULT_TOP_K."""


@dataclass(frozen=True)
class SearchHit:
    segment: Segment
    score: float
    """Fused reciprocal-rank score; higher is better."""
    vector_score: float
    """Cosine similarity to the query vector; 0 when the vector search did not return the segment."""
    text_score: float
    """`ts_rank_cd` of the full-text match; 0 when the segment did not match the query text."""


class HybridSearch:
    def __init__(self, store: SegmentStore, settings: VectorIndexSettings) -> None:
        self._store = store
        self._candidates = settings.search_candidates
        self._ef_search = settings.hnsw_ef_search
        self._rrf_k = settings.rrf_k

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        """The best `top_k` segments of the calling tenant for the query, best first."""
        top_k = _top_k(query.top_k)
        if not query.vector and not query.text.strip():
            raise InvalidArgument("a search needs query_text, query_vector or both")
        if query.vector:
            self._store.check_vector(query.vector, "query_vector")
        if any(not document_id for document_id in query.document_ids):
            raise InvalidArgument("document_ids must not contain empty ids")
        limit = max(top_k, self._candidates)
        # One snapshot for every read: both retrievers and the segments see the same active versions.
        async with self._store.snapshot() as conn:
            by_vector = await self._by_vector(query, limit, conn)
            by_text = await self._by_text(query, limit, conn)
            fused = reciprocal_rank_fusion(
                [[c.segment_id for c in by_vector], [c.segment_id for c in by_text]], k=self._rrf_k
            )[:top_k]
            if not fused:
                return []
            found = await self._store.get_segments([f.item for f in fused], conn)
        segments = {segment.id: segment for segment in found}
        vector_scores = {c.segment_id: c.score for c in by_vector}
        text_scores = {c.segment_id: c.score for c in by_text}
        return [
            SearchHit(
                segment=segments[f.item],
                score=f.score,
                vector_score=vector_scores.get(f.item, 0.0),
                text_score=text_scores.get(f.item, 0.0),
            )
            for f in fused
            if f.item in segments
        ]

    async def _by_vector(self, query: SearchQuery, limit: int, conn: Db) -> list[Candidate]:
        if not query.vector:
            return []
        return await self._store.vector_candidates(query.vector, query.document_ids, limit, self._ef_search, conn)

    async def _by_text(self, query: SearchQuery, limit: int, conn: Db) -> list[Candidate]:
        expression = fts.query_expression(query.text)
        if expression is None:
            return []
        return await self._store.text_candidates(expression, query.document_ids, limit, conn)


def _top_k(requested: int) -> int:
    if requested == 0:
        return DEFAULT_TOP_K
    if not 1 <= requested <= MAX_TOP_K:
        raise InvalidArgument(f"top_k must be between 1 and {MAX_TOP_K} (or 0 for {DEFAULT_TOP_K}), got {requested}")
    return requested
