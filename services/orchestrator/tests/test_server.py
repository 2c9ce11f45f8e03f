"""OrchestratorService through a real process, a real Postgres and Redis, and the LLM simulator."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from pdfchat.common.identity import Identity
from pdfchat.orchestrator.extractive import NOTICE_EN
from pdfchat.orchestrator.server import PARTIAL_OUTPUT_TOKENS_KEY
from pdfchat.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from pdfchat_tools.llm_sim import SimServer

pytestmark = pytest.mark.integration

SPEC = orchestrator_pb2.GenerationSpec(
    question="When was the tower finished?",
    passages=[
        orchestrator_pb2.ContextPassage(
            segment_id="s1", document_id="d1", page=7, text="The tower was finished in 1889. It is tall."
        ),
        orchestrator_pb2.ContextPassage(segment_id="s2", document_id="d1", page=8, text="Bridges cross the river."),
    ],
)


def tenant() -> tuple[tuple[str, str], ...]:
    return Identity(tenant_id=f"t-{uuid.uuid4().hex[:8]}").to_metadata()


@contextlib.asynccontextmanager
async def connect(address: str) -> AsyncIterator[orchestrator_pb2_grpc.OrchestratorServiceStub]:
    async with grpc.aio.insecure_channel(address) as channel:
        yield orchestrator_pb2_grpc.OrchestratorServiceStub(channel)


async def read_stream(
    client: orchestrator_pb2_grpc.OrchestratorServiceStub, metadata: tuple[tuple[str, str], ...]
) -> list[orchestrator_pb2.GenerateStreamResponse]:
    call = client.GenerateStream(orchestrator_pb2.GenerateStreamRequest(spec=SPEC), metadata=metadata, timeout=20)
    return [response async for response in call]


async def test_stream_has_increasing_seq_and_ends_with_usage(orchestrator_with_llm: str, sim: SimServer) -> None:
    metadata = tenant()
    async with connect(orchestrator_with_llm) as client:
        responses = await read_stream(client, metadata)
    assert [r.seq for r in responses] == list(range(1, len(responses) + 1))
    *deltas, end = responses
    assert deltas
    assert all(r.WhichOneof("event") == "delta" for r in deltas)
    assert "".join(r.delta.text for r in deltas) == "From the context: The tower was finished in 1889. [1]"
    assert end.WhichOneof("event") == "end"
    assert (end.end.model, end.end.finish_reason) == ("sim-model", "stop")
    assert end.end.usage.input_tokens > 0
    assert end.end.usage.output_tokens > 0
    assert end.end.usage.cost_usd > 0
    assert sim.stats()["counters"]["streams_completed"] == 1


async def test_usage_is_recorded_for_the_calling_tenant_only(orchestrator_with_llm: str, sim: SimServer) -> None:
    mine, other = tenant(), tenant()
    async with connect(orchestrator_with_llm) as client:
        responses = await read_stream(client, mine)
        reply = await client.Generate(orchestrator_pb2.GenerateRequest(spec=SPEC), metadata=mine, timeout=20)
        usage = await client.GetUsage(orchestrator_pb2.GetUsageRequest(), metadata=mine, timeout=10)
        others = await client.GetUsage(orchestrator_pb2.GetUsageRequest(), metadata=other, timeout=10)
    streamed = responses[-1].end.usage
    assert usage.requests == 2
    assert usage.usage.output_tokens == streamed.output_tokens + reply.usage.output_tokens
    assert usage.usage.input_tokens == streamed.input_tokens + reply.usage.input_tokens
    assert usage.usage.cost_usd == pytest.approx(streamed.cost_usd + reply.usage.cost_usd)
    assert [(m.model, m.requests) for m in usage.by_model] == [("sim-model", 2)]
    assert others.requests == 0
    assert others.usage.output_tokens == 0


async def test_single_fault_before_first_token_is_retried(orchestrator_with_llm: str, sim: SimServer) -> None:
    sim.configure(next_faults=["503"])
    async with connect(orchestrator_with_llm) as client:
        responses = await read_stream(client, tenant())
    assert responses[-1].end.provider != "extractive"
    assert sim.stats()["counters"]["status_503"] == 1
    assert sim.stats()["counters"]["streams_completed"] == 1


async def test_fault_before_first_token_falls_back_to_extractive(orchestrator_with_llm: str, sim: SimServer) -> None:
    # Three attempts (PDFCHAT_RETRY_MAX_ATTEMPTS default), all failing: the extractive provider answers.
    sim.configure(next_faults=["503", "503", "503"])
    async with connect(orchestrator_with_llm) as client:
        responses = await read_stream(client, tenant())
    *deltas, end = responses
    assert end.end.provider == "extractive"
    text = "".join(r.delta.text for r in deltas)
    assert text.startswith(NOTICE_EN)
    assert "The tower was finished in 1889. [1] (p. 7)" in text
    assert sim.stats()["counters"]["status_503"] == 3


async def test_no_first_token_in_time_falls_back(orchestrator_with_llm: str, sim: SimServer) -> None:
    # The orchestrator under test waits 2 s for a first token (PDFCHAT_LLM_FIRST_TOKEN_TIMEOUT_SECONDS).
    sim.configure(next_faults=["timeout", "timeout", "timeout"], timeout_seconds=4)
    async with connect(orchestrator_with_llm) as client:
        responses = await read_stream(client, tenant())
    assert responses[-1].end.provider == "extractive"
    assert sim.stats()["counters"]["timeouts"] == 3


async def test_cut_stream_ends_with_unavailable_not_a_normal_end(orchestrator_with_llm: str, sim: SimServer) -> None:
    sim.configure(next_faults=["cut"], cut_after_tokens=3)
    metadata = tenant()
    received: list[orchestrator_pb2.GenerateStreamResponse] = []
    async with connect(orchestrator_with_llm) as client:
        call = client.GenerateStream(orchestrator_pb2.GenerateStreamRequest(spec=SPEC), metadata=metadata, timeout=20)

        async def consume() -> None:
            async for response in call:
                received.append(response)

        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await consume()
        trailing = dict(failed.value.trailing_metadata() or ())
        usage = await client.GetUsage(orchestrator_pb2.GetUsageRequest(), metadata=metadata, timeout=10)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(received) == 3
    assert all(r.WhichOneof("event") == "delta" for r in received)
    assert int(trailing[PARTIAL_OUTPUT_TOKENS_KEY]) > 0
    assert usage.requests == 1
    assert usage.usage.output_tokens > 0


async def test_list_models_names_the_llm_and_extractive(orchestrator_with_llm: str) -> None:
    async with connect(orchestrator_with_llm) as client:
        reply = await client.ListModels(orchestrator_pb2.ListModelsRequest(), metadata=tenant(), timeout=10)
    assert [(m.name, m.input_price_per_mtok) for m in reply.models] == [("sim-model", 1.0), ("extractive", 0.0)]


async def test_without_llm_the_answer_says_so_and_quotes_passages(orchestrator_without_llm: str) -> None:
    metadata = tenant()
    async with connect(orchestrator_without_llm) as client:
        responses = await read_stream(client, metadata)
        reply = await client.Generate(orchestrator_pb2.GenerateRequest(spec=SPEC), metadata=metadata, timeout=20)
        models = await client.ListModels(orchestrator_pb2.ListModelsRequest(), metadata=metadata, timeout=10)
    *deltas, end = responses
    assert len(deltas) > 5
    text = "".join(r.delta.text for r in deltas)
    assert text.startswith("No language model is configured")
    assert "The tower was finished in 1889. [1] (p. 7)" in text
    assert (end.end.provider, end.end.model) == ("extractive", "extractive")
    assert end.end.usage.output_tokens > 0
    assert reply.text == text
    assert [m.name for m in models.models] == ["extractive"]


async def test_calls_without_tenant_are_refused(orchestrator_without_llm: str) -> None:
    async with connect(orchestrator_without_llm) as client:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.GetUsage(orchestrator_pb2.GetUsageRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
