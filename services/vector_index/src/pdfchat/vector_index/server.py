"""gRPC glue: VectorIndexService requests become calls on `SegmentStore` and `HybridSearch`.

Nothing here decides anything; validation and tenant scoping live in the domain modules, and the common
server interceptor turns their errors into status codes.
"""

from __future__ import annotations

from typing import Any

import grpc

from pdfchat.v1 import common_pb2, vector_index_pb2, vector_index_pb2_grpc
from pdfchat.vector_index.search import HybridSearch, SearchHit, SearchQuery
from pdfchat.vector_index.store import Box, Segment, SegmentStore, SegmentVector

Context = grpc.aio.ServicerContext[Any, Any]


class VectorIndexServicer(vector_index_pb2_grpc.VectorIndexServiceServicer):
    def __init__(self, store: SegmentStore, search: HybridSearch) -> None:
        self._store = store
        self._search = search

    async def UpsertSegments(
        self, request: vector_index_pb2.UpsertSegmentsRequest, context: Context
    ) -> vector_index_pb2.UpsertSegmentsResponse:
        upserted = await self._store.upsert_segments([segment_from_message(m) for m in request.segments])
        return vector_index_pb2.UpsertSegmentsResponse(upserted=upserted)

    async def UpsertVectors(
        self, request: vector_index_pb2.UpsertVectorsRequest, context: Context
    ) -> vector_index_pb2.UpsertVectorsResponse:
        vectors = [SegmentVector(segment_id=m.segment_id, values=list(m.values)) for m in request.vectors]
        upserted = await self._store.upsert_vectors(vectors, request.model)
        return vector_index_pb2.UpsertVectorsResponse(upserted=upserted)

    async def GetSegments(
        self, request: vector_index_pb2.GetSegmentsRequest, context: Context
    ) -> vector_index_pb2.GetSegmentsResponse:
        segments = await self._store.get_segments(list(request.segment_ids))
        return vector_index_pb2.GetSegmentsResponse(segments=[segment_to_message(s) for s in segments])

    async def Search(
        self, request: vector_index_pb2.SearchRequest, context: Context
    ) -> vector_index_pb2.SearchResponse:
        query = SearchQuery(
            text=request.query_text,
            vector=list(request.query_vector),
            document_ids=list(request.document_ids),
            top_k=request.top_k,
        )
        hits = await self._search.search(query)
        return vector_index_pb2.SearchResponse(hits=[hit_to_message(hit) for hit in hits])

    async def DeleteDocumentSegments(
        self, request: vector_index_pb2.DeleteDocumentSegmentsRequest, context: Context
    ) -> vector_index_pb2.DeleteDocumentSegmentsResponse:
        deleted = await self._store.delete_document(request.document_id, request.keep_version)
        return vector_index_pb2.DeleteDocumentSegmentsResponse(deleted=deleted)

    async def GetDocumentIndexStats(
        self, request: vector_index_pb2.GetDocumentIndexStatsRequest, context: Context
    ) -> vector_index_pb2.GetDocumentIndexStatsResponse:
        stats = await self._store.stats(request.document_id, request.version)
        return vector_index_pb2.GetDocumentIndexStatsResponse(segments=stats.segments, embedded=stats.embedded)

    async def ActivateVersion(
        self, request: vector_index_pb2.ActivateVersionRequest, context: Context
    ) -> vector_index_pb2.ActivateVersionResponse:
        await self._store.activate_version(request.document_id, request.version)
        return vector_index_pb2.ActivateVersionResponse()


def segment_from_message(message: vector_index_pb2.Segment) -> Segment:
    return Segment(
        id=message.id,
        document_id=message.document_id,
        version=message.version,
        page=message.page,
        ordinal=message.ordinal,
        text=message.text,
        boxes=tuple(Box(b.x0, b.y0, b.x1, b.y1) for b in message.boxes),
    )


def segment_to_message(segment: Segment) -> vector_index_pb2.Segment:
    return vector_index_pb2.Segment(
        id=segment.id,
        document_id=segment.document_id,
        version=segment.version,
        page=segment.page,
        ordinal=segment.ordinal,
        text=segment.text,
        boxes=[common_pb2.BoundingBox(x0=b.x0, y0=b.y0, x1=b.x1, y1=b.y1) for b in segment.boxes],
    )


def hit_to_message(hit: SearchHit) -> vector_index_pb2.SearchHit:
    return vector_index_pb2.SearchHit(
        segment=segment_to_message(hit.segment),
        score=hit.score,
        vector_score=hit.vector_score,
        text_score=hit.text_score,
    )
