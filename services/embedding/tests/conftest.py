"""Fixtures of the embedding tests: the packaged MiniLM model, loaded once per session (about 8 s), and
service stacks that consume embed jobs on their own JetStream namespace."""

import asyncio
import os
import uuid
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
def own_stack(stack_factory: Callable[..., Stack], nats_url: str) -> Iterator[OwnStack]:
    """Starts services like `stack_factory`, but on a JetStream namespace of their own, stopped with the module.

    The session's stacks share one namespace and the durable consumer `embedding`: an embedding process
    left running would compete for other tests' embed jobs and answer them from the wrong vector_index.
    """
    started: list[tuple[Stack, str]] = []

    def start(services: tuple[str, ...], extra_env: dict[str, str] | None = None) -> Stack:
        namespace = f"temb{uuid.uuid4().hex[:8]}"
        stack = stack_factory(services, extra_env={"PDFCHAT_JOBS_NAMESPACE": namespace, **(extra_env or {})})
        started.append((stack, namespace))
        return stack

    yield start
    for stack, namespace in started:
        stack.stop()
        asyncio.run(_delete_streams(nats_url, namespace))


async def _delete_streams(url: str, namespace: str) -> None:
    import nats

    client = await nats.connect(url)
    try:
        js = client.jetstream()
        for suffix in ("JOBS", "DLQ"):
            try:
                await js.delete_stream(f"{namespace.upper()}_{suffix}")
            except Exception:  # the stream may never have been created
                continue
    finally:
        await client.close()
