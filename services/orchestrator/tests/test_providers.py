"""OpenAICompatibleProvider against the simulator: streaming, usage, and errors it can act on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pdfchat.orchestrator.generation import (
    Finished,
    GenerationRequest,
    ModelSpec,
    Passage,
    ProviderEvent,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    StreamCut,
    TextDelta,
)
from pdfchat.orchestrator.providers import ExtractiveProvider, OpenAICompatibleProvider
from pdfchat_tools.llm_sim import SimServer

MODEL = ModelSpec("sim-model", "sim")
REQUEST = GenerationRequest(question="Where is it?", passages=(Passage("It is in Paris. Really.", page=5),))


@pytest.fixture
def provider(sim: SimServer) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        name="sim", base_url=sim.openai_base_url, api_key="", models=[MODEL], request_timeout_seconds=5
    )


async def drain(events: AsyncIterator[ProviderEvent]) -> tuple[str, Finished | None]:
    text, end = [], None
    async for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        else:
            end = event
    return "".join(text), end


async def test_streams_the_answer_and_the_reported_usage(provider: OpenAICompatibleProvider) -> None:
    text, end = await drain(provider.stream(REQUEST, MODEL))
    assert text == "From the context: It is in Paris. [1]"
    assert end is not None
    assert end.finish_reason == "stop"
    assert end.usage is not None
    assert end.usage.input_tokens > 0
    assert end.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("fault", "error"), [("503", ProviderUnavailable), ("500", ProviderUnavailable), ("429", ProviderRateLimited)]
)
async def test_errors_before_the_first_token_are_classified(
    sim: SimServer, provider: OpenAICompatibleProvider, fault: str, error: type[Exception]
) -> None:
    sim.configure(next_faults=[fault])
    with pytest.raises(error):
        await drain(provider.stream(REQUEST, MODEL))


async def test_rate_limit_carries_retry_after(sim: SimServer, provider: OpenAICompatibleProvider) -> None:
    sim.configure(rpm_limit=1)
    await drain(provider.stream(REQUEST, MODEL))
    with pytest.raises(ProviderRateLimited) as limited:
        await drain(provider.stream(REQUEST, MODEL))
    assert limited.value.retry_after_seconds is not None
    assert limited.value.retry_after_seconds > 50


async def test_cut_stream_raises_stream_cut(sim: SimServer, provider: OpenAICompatibleProvider) -> None:
    sim.configure(next_faults=["cut"], cut_after_tokens=2)
    with pytest.raises(StreamCut):
        await drain(provider.stream(REQUEST, MODEL))


async def test_bad_key_is_rejected(sim: SimServer, provider: OpenAICompatibleProvider) -> None:
    sim.configure(api_key="secret")
    with pytest.raises(ProviderRejected):
        await drain(provider.stream(REQUEST, MODEL))


async def test_extractive_provider_streams_and_counts_usage() -> None:
    extractive = ExtractiveProvider()
    text, end = await drain(extractive.stream(REQUEST, extractive.models[0]))
    assert "It is in Paris. [1] (p. 5)" in text
    assert end is not None
    assert end.usage is not None
    assert end.usage.output_tokens > 0
