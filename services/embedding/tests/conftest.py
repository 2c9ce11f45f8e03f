"""Fixtures of the embedding tests: the packaged MiniLM model, loaded once per session (about 8 s)."""

import os
from collections.abc import AsyncIterator

import pytest

from pdfchat.embedding.models import SentenceTransformerEmbedder, packaged_model_path


@pytest.fixture(scope="session")
async def minilm() -> AsyncIterator[SentenceTransformerEmbedder]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    embedder = await SentenceTransformerEmbedder.load(packaged_model_path(), threads=os.cpu_count() or 1, max_batch=64)
    yield embedder
    await embedder.close()
