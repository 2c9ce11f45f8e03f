"""EmbeddingService through the real service process (model loaded, NATS connected)."""

import math
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pdfchat.common.identity import Identity
from pdfchat.v1 import embedding_pb2, embedding_pb2_grpc
from pdfchat_tools.devstack import Stack
from pdfchat_tools.llm_sim import SimConfig, SimServer

pytestmark = pytest.mark.integration

METADATA = Identity(tenant_id="t1").to_metadata()


@pytest.fixture(scope="module")
def embedding_addr(own_stack: Callable[..., Stack]) -> str:
    stack = own_stack(("embedding",))
    return stack.config.env["PDFCHAT_EMBEDDING_ADDR"]


async def _embed(address: str, request: embedding_pb2.EmbedRequest) -> embedding_pb2.EmbedResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        return await embedding_pb2_grpc.EmbeddingServiceStub(channel).Embed(request, metadata=METADATA, timeout=30)


async def test_service_reports_serving(embedding_addr: str) -> None:
    async with grpc.aio.insecure_channel(embedding_addr) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="pdfchat.v1.EmbeddingService"), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_embed_returns_one_384_dimension_unit_vector_per_text(embedding_addr: str) -> None:
    reply = await _embed(
        embedding_addr,
        embedding_pb2.EmbedRequest(
            texts=["What was the revenue in 2023?", "2023年的收入是多少？"], kind=embedding_pb2.EMBED_KIND_QUERY
        ),
    )
    assert reply.dimensions == 384
    assert reply.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(reply.embeddings) == 2
    for embedding in reply.embeddings:
        assert len(embedding.values) == 384
        assert math.isclose(math.fsum(v * v for v in embedding.values), 1.0, rel_tol=1e-4)


async def test_embed_accepts_a_batch_of_passages(embedding_addr: str) -> None:
    texts = [f"Passage number {n} about the annual report." for n in range(100)]
    reply = await _embed(embedding_addr, embedding_pb2.EmbedRequest(texts=texts, kind=embedding_pb2.EMBED_KIND_PASSAGE))
    assert len(reply.embeddings) == 100


async def test_empty_request_is_invalid_argument(embedding_addr: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await _embed(embedding_addr, embedding_pb2.EmbedRequest())
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "empty" in (error.value.details() or "")


async def test_too_many_texts_is_invalid_argument(embedding_addr: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await _embed(embedding_addr, embedding_pb2.EmbedRequest(texts=["x"] * 257))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_oversized_text_is_invalid_argument(embedding_addr: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await _embed(embedding_addr, embedding_pb2.EmbedRequest(texts=["ok", "x" * 20_000]))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "texts[1]" in (error.value.details() or "")


async def test_call_without_tenant_is_unauthenticated(embedding_addr: str) -> None:
    async with grpc.aio.insecure_channel(embedding_addr) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await embedding_pb2_grpc.EmbeddingServiceStub(channel).Embed(
                embedding_pb2.EmbedRequest(texts=["hi"]), timeout=10
            )
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_service_uses_an_openai_compatible_endpoint_when_configured(own_stack: Callable[..., Stack]) -> None:
    with SimServer(SimConfig(embedding_dimensions=384)) as sim:
        stack = own_stack(
            ("embedding",),
            extra_env={
                "PDFCHAT_EMBEDDING_BASE_URL": sim.openai_base_url,
                "PDFCHAT_EMBEDDING_API_MODEL": "sim-embedding",
                "PDFCHAT_EMBEDDING_API_KEY": "test-key",
            },
        )
        try:
            reply = await _embed(
                stack.config.env["PDFCHAT_EMBEDDING_ADDR"], embedding_pb2.EmbedRequest(texts=["one", "two", "three"])
            )
        finally:
            stack.stop()
        stats = sim.stats()
    assert reply.model == "sim-embedding"
    assert reply.dimensions == 384
    assert len(reply.embeddings) == 3
    assert stats["counters"]["embedding_inputs"] == 1 + 3, "a start-up probe, then the three texts"
