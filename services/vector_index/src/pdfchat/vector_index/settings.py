"""Settings of the vector_index service (flat `PDFCHAT_*` variables)."""

from __future__ import annotations

from pydantic import Field

from pdfchat.common.settings import CommonSettings, DatabaseSettings, ServiceAddresses


class VectorIndexSettings(CommonSettings, DatabaseSettings, ServiceAddresses):
    embedding_dimensions: int = Field(default=384, gt=0)
    """Length of every stored and query vector; must match the `vector(N)` column of the migrations."""
    search_candidates: int = Field(default=50, ge=1, le=1000)
    """How many candidates each retriever (vector, full text) contributes to fusion (at least top_k)."""
    hnsw_ef_search: int = Field(default=200, ge=1, le=1000)
    """HNSW candidate list size per search; larger finds more true neighbours under selective filters."""
    rrf_k: int = Field(default=60, ge=1)
    """Reciprocal rank fusion constant: larger flattens the advantage of the first ranks."""
    max_batch: int = Field(default=5000, ge=1)
    """Most segments, vectors or ids one request may carry."""
