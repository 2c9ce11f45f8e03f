"""Fixtures of the embedding tests: the packaged MiniLM model, loaded once per session (about 8 s), and
service stacks stopped with their module."""

import os
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from pdfchat.embedding.models import SentenceTransformerEmbedder, packaged_model_path
from pdfchat_tools.devstack import Stack

OwnStack = Callable[..., Stack]


@pytest.fixture(scope="session")
async def minilm() -> AsyncIterator[SentenceTransformerEmbedder]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    embedder = await SentenceTransformerEmbedder.load(packaged_model_path(), threads=os.cpu_count() or 1, max_batch=64)
    yield embedder
    await embedder.close()


@pytest.fixture(scope="module")
def own_stack(stack_factory: Callable[..., Stack]) -> Iterator[OwnStack]:
    """Starts services like `stack_factory` (each stack on its own JetStream namespace), but stops them when
    the module ends: every embedding process holds a model in memory."""
    started: list[Stack] = []

    def start(services: tuple[str, ...], extra_env: dict[str, str] | None = None) -> Stack:
        stack = stack_factory(services, extra_env=extra_env)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()
