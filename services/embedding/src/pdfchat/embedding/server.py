"""gRPC glue of EmbeddingService: checks the request, embeds through the configured embedder, answers."""

from __future__ import annotations

import grpc

from pdfchat.embedding.models import Embedder, EmbedKind, TextLimits
from pdfchat.v1 import embedding_pb2, embedding_pb2_grpc

SERVICE_NAME = embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name

_KINDS = {
    embedding_pb2.EMBED_KIND_UNSPECIFIED: EmbedKind.QUERY,
    embedding_pb2.EMBED_KIND_QUERY: EmbedKind.QUERY,
    embedding_pb2.EMBED_KIND_PASSAGE: EmbedKind.PASSAGE,
}


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    def __init__(self, embedder: Embedder, limits: TextLimits) -> None:
        self._embedder = embedder
        self._limits = limits

    async def Embed(
        self, request: embedding_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.EmbedResponse:
        texts = list(request.texts)
        self._limits.check(texts)
        # an unknown kind (a newer client) is embedded as a query, the kind without a prefix in most models
        vectors = await self._embedder.embed(texts, _KINDS.get(request.kind, EmbedKind.QUERY))
        return embedding_pb2.EmbedResponse(
            embeddings=[embedding_pb2.Embedding(values=vector) for vector in vectors],
            model=self._embedder.model_name,
            dimensions=self._embedder.dimensions,
        )
