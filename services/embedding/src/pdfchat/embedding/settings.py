"""Settings of the embedding service: which model embeds, how hard it may use the machine, job limits.

The local sentence-transformers model is the default (the packaged all-MiniLM-L6-v2, 384 dimensions,
no network). Setting PDFCHAT_EMBEDDING_BASE_URL switches to an OpenAI-compatible embeddings endpoint
instead; the local model is then not loaded at all.
"""

from __future__ import annotations

import os

from pydantic import Field

from pdfchat.common.settings import CommonSettings, NatsSettings, ServiceAddresses
from pdfchat.embedding.models import packaged_model_path


class EmbeddingSettings(CommonSettings, NatsSettings, ServiceAddresses):
    embedding_model: str = Field(default_factory=packaged_model_path)
    """Path (or name, when the hub is reachable) of a sentence-transformers model; the packaged MiniLM by default."""
    embedding_base_url: str | None = None
    """Base URL of an OpenAI-compatible embeddings API (`.../v1`); when set it is used instead of the local model."""
    embedding_api_key: str | None = None
    """Key for the embeddings API; endpoints that check none accept any value."""
    embedding_api_model: str = "text-embedding-3-small"
    """Model name sent to the embeddings API."""
    embedding_api_dimensions: int | None = None
    """Dimensions to ask the embeddings API for (models that can shorten); None keeps the model's own."""
    embedding_api_timeout_seconds: float = 30.0
    """Longest wait for one embeddings API call when the caller set no shorter deadline."""
    embedding_threads: int = Field(default_factory=lambda: os.cpu_count() or 1)
    """Threads torch may use for the local model; all cores by default."""
    embedding_max_batch: int = Field(default=64, ge=1)
    """Most texts encoded (or sent to the API) in one batch."""
    embedding_passage_batch: int = Field(default=16, ge=1)
    """Most passages the local model encodes in one batch: a query waits for at most one such batch."""
    embedding_max_texts: int = Field(default=256, ge=1)
    """Most texts one Embed call may carry."""
    embedding_max_text_chars: int = Field(default=16_384, ge=1)
    """Longest text one Embed call may carry, in characters (the model truncates long texts anyway)."""
    embedding_job_concurrency: int = Field(default=2, ge=1)
    """Embed jobs handled at once: one can fetch or store while another encodes."""
    embedding_job_ack_wait_seconds: float = 60.0
    """JetStream AckWait of embed jobs; a running job is marked in progress at a third of it."""
    embedding_job_max_deliver: int = 5
    """Deliveries of an embed job before it goes to the dead-letter stream."""
