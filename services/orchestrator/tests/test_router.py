"""Routing: LLM first when configured, extractive otherwise; fallback only before the first token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from pdfchat.common.errors import InvalidArgument, Unavailable
from pdfchat.orchestrator import config
from pdfchat.orchestrator.generation import (
    Finished,
    GenerationRequest,
    ModelSpec,
    Passage,
    ProviderEvent,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    TextDelta,
    TokenUsage,
)
from pdfchat.orchestrator.providers import ExtractiveProvider
from pdfchat.orchestrator.retry import RetryPolicy
from pdfchat.orchestrator.router import Completion, Router, RouterControls, RoutingTrace, StreamInterrupted

REQUEST = GenerationRequest(question="What colour is the sky?", passages=(Passage("The sky is blue.", page=1),))


class ScriptedProvider:
    """A provider that plays a script: text pieces, then a finish, a failure or a hang."""

    def __init__(self, pieces: Sequence[str], ending: str = "finish", hang_seconds: float = 0.0) -> None:
        self.pieces = pieces
        self.ending = ending
        self.hang_seconds = hang_seconds
        self.calls = 0
        self.closed_streams = 0

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def models(self) -> Sequence[ModelSpec]:
        return (ModelSpec("scripted-model", "scripted", input_price_per_mtok=1.0, output_price_per_mtok=2.0),)

    async def stream(self, request: GenerationRequest, model: ModelSpec) -> AsyncIterator[ProviderEvent]:
        self.calls += 1
        try:
            if self.hang_seconds:
                await asyncio.sleep(self.hang_seconds)
            if self.ending == "fail-first":
                raise ProviderUnavailable("HTTP 503", status=503)
            for piece in self.pieces:
                yield TextDelta(piece)
            if self.ending == "fail":
                raise ProviderUnavailable("connection dropped")
            if self.ending == "finish":
                yield Finished("stop", TokenUsage(10, len(self.pieces)))
        finally:
            self.closed_streams += 1

    async def close(self) -> None:
        return None


def router(llm: ScriptedProvider | None, first_token_timeout: float = 5.0) -> Router:
    # One attempt per route: these tests are about fallback; retries are tested in test_retry.py.
    return Router(
        llm=llm,
        extractive=ExtractiveProvider(),
        first_token_timeout_seconds=first_token_timeout,
        controls=RouterControls(retry_policy=RetryPolicy(max_attempts=1)),
    )


async def collect(r: Router, request: GenerationRequest = REQUEST) -> tuple[str, Completion, RoutingTrace]:
    trace = RoutingTrace()
    text: list[str] = []
    end = None
    async for event in r.stream(request, trace):
        if isinstance(event, Completion):
            end = event
        else:
            text.append(event.text)
    assert end is not None
    return "".join(text), end, trace


async def test_without_llm_the_extractive_provider_answers() -> None:
    text, end, trace = await collect(router(None))
    assert end.provider == "extractive"
    assert text.startswith("No language model is configured")
    assert "The sky is blue. [1] (p. 1)" in text
    assert end.usage.output_tokens > 0
    assert trace.fallbacks == []


async def test_configured_llm_answers_first() -> None:
    llm = ScriptedProvider(["Blue", " it is."])
    text, end, _ = await collect(router(llm))
    assert (text, end.provider, end.model.name) == ("Blue it is.", "scripted", "scripted-model")
    assert end.usage == TokenUsage(10, 2)
    assert end.usage.cost_usd(end.model) == pytest.approx((10 * 1.0 + 2 * 2.0) / 1e6)


async def test_failure_before_first_token_falls_back_to_extractive() -> None:
    llm = ScriptedProvider([], ending="fail-first")
    text, end, trace = await collect(router(llm))
    assert end.provider == "extractive"
    assert "The sky is blue." in text
    assert len(trace.fallbacks) == 1
    assert "503" in trace.fallbacks[0]


async def test_no_first_token_in_time_falls_back() -> None:
    llm = ScriptedProvider(["late"], hang_seconds=5)
    _, end, trace = await collect(router(llm, first_token_timeout=0.1))
    assert end.provider == "extractive"
    assert "ProviderTimeout" in trace.fallbacks[0]
    assert llm.closed_streams == 1


async def test_failure_after_first_token_interrupts_with_partial_usage() -> None:
    llm = ScriptedProvider(["Blue", " is"], ending="fail")
    trace = RoutingTrace()
    received: list[str] = []

    async def consume() -> None:
        async for event in router(llm).stream(REQUEST, trace):
            assert not isinstance(event, Completion), "a cut stream must never end normally"
            received.append(event.text)

    with pytest.raises(StreamInterrupted) as interrupted:
        await consume()
    assert received == ["Blue", " is"]
    assert interrupted.value.usage.output_tokens > 0
    assert llm.calls == 1


async def test_stream_without_finish_reason_is_interrupted_not_finished() -> None:
    llm = ScriptedProvider(["Blue"], ending="silent")
    with pytest.raises(StreamInterrupted):
        await collect(router(llm))


async def test_unary_generate_falls_back_even_after_tokens() -> None:
    llm = ScriptedProvider(["Blue"], ending="fail")
    text, end = await router(llm).generate(REQUEST, RoutingTrace())
    assert end.provider == "extractive"
    assert "The sky is blue." in text


def test_plan_orders_llm_then_extractive_and_honours_model_choice() -> None:
    llm = ScriptedProvider([])
    assert [r.model.name for r in router(llm).plan(REQUEST)] == ["scripted-model", "extractive"]
    extractive_only = GenerationRequest(question="q", model="extractive")
    assert [r.model.name for r in router(llm).plan(extractive_only)] == ["extractive"]
    with pytest.raises(InvalidArgument):
        router(llm).plan(GenerationRequest(question="q", model="nope"))
    with pytest.raises(InvalidArgument):
        router(None).plan(GenerationRequest(question="q", model="scripted-model"))


async def test_all_routes_failing_is_unavailable() -> None:
    class Broken(ScriptedProvider):
        @property
        def models(self) -> Sequence[ModelSpec]:
            return (ModelSpec("extractive", "broken"),)

    r = Router(llm=None, extractive=Broken([], ending="fail-first"), first_token_timeout_seconds=1)
    with pytest.raises(Unavailable):
        await collect(r)


class FailingProvider(ScriptedProvider):
    """Serves several named models; each fails with its scripted error or answers."""

    def __init__(self, name: str, failures: dict[str, Exception]) -> None:
        super().__init__(["ok"])
        self._name = name
        self.failures = failures
        self.asked: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    async def stream(self, request: GenerationRequest, model: ModelSpec) -> AsyncIterator[ProviderEvent]:
        self.asked.append(model.name)
        if model.name in self.failures:
            raise self.failures[model.name]
        yield TextDelta(f"from {model.name}")
        yield Finished("stop", TokenUsage(5, 2))


CHAIN_CONFIG = {
    "providers": [
        {
            "name": "p",
            "base_url": "http://p.invalid/v1",
            "models": [
                {
                    "name": "a",
                    "input_price_per_mtok": 1,
                    "context_window": 100_000,
                    "fallbacks": {"rate_limited": ["c"], "rejected": []},
                },
                {"name": "b", "input_price_per_mtok": 2, "context_window": 100_000},
                {"name": "c", "input_price_per_mtok": 3, "context_window": 100_000},
                {"name": "tiny", "input_price_per_mtok": 0.1, "context_window": 10},
            ],
        }
    ],
    "routing": {"interactive": {"strategy": "cost"}},
}


def chain_router(failures: dict[str, Exception]) -> tuple[Router, FailingProvider]:
    provider = FailingProvider("p", failures)
    r = Router(
        extractive=ExtractiveProvider(),
        first_token_timeout_seconds=5,
        controls=RouterControls(retry_policy=RetryPolicy(max_attempts=1)),
    )
    r.apply(config.parse(CHAIN_CONFIG, {}), {"p": provider})
    return r, provider


def test_plan_orders_by_cost_and_skips_models_whose_context_is_too_small() -> None:
    r, _ = chain_router({})
    trace = RoutingTrace()
    assert [route.model.name for route in r.plan(REQUEST, trace)] == ["a", "b", "c", "extractive"]
    assert any("tiny" in reason and "context" in reason for reason in trace.fallbacks)


async def test_rate_limited_model_falls_back_along_its_declared_chain() -> None:
    r, provider = chain_router({"a": ProviderRateLimited("429", status=429)})
    text, end, trace = await collect(r)
    assert (provider.asked, end.model.name, text) == (["a", "c"], "c", "from c")
    assert any("a: rate_limited" in reason for reason in trace.fallbacks)


async def test_unavailable_model_falls_back_in_plan_order_without_a_declared_chain() -> None:
    r, provider = chain_router({"a": ProviderUnavailable("503", status=503)})
    _, end, _ = await collect(r)
    assert (provider.asked, end.model.name) == (["a", "b"], "b")


async def test_an_empty_chain_goes_straight_to_the_extractive_provider() -> None:
    r, provider = chain_router({"a": ProviderRejected("400", status=400)})
    _, end, _ = await collect(r)
    assert (provider.asked, end.provider) == (["a"], "extractive")
