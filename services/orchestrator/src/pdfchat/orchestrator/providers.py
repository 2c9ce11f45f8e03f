"""Providers turn a `GenerationRequest` into a stream of tokens.

`Provider` is the seam the router works against: `OpenAICompatibleProvider` talks to any
OpenAI-compatible endpoint through the openai SDK (streaming, asking for usage in the last chunk),
`ExtractiveProvider` answers from the retrieved passages without any model. Providers do not retry and
do not fall back: those are the router's decisions. The SDK's own retries are off (`max_retries=0`) so
that one attempt is one upstream call and every failure is visible here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import openai

from pdfchat.common import deadlines
from pdfchat.orchestrator import extractive, prompts, tokens
from pdfchat.orchestrator.config import LLMConfig
from pdfchat.orchestrator.generation import (
    Finished,
    GenerationRequest,
    ModelSpec,
    ProviderError,
    ProviderEvent,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    StreamCut,
    TextDelta,
    TokenUsage,
)

log = logging.getLogger(__name__)

EXTRACTIVE_MODEL = "extractive"

HeadersObserver = Callable[[str, ModelSpec, Mapping[str, str]], Awaitable[None]]
"""Called with (provider name, model, response headers) for every HTTP answer, errors included."""


class Provider(Protocol):
    """A source of generated text. `stream()` yields `TextDelta`s then one `Finished`, or raises `ProviderError`."""

    @property
    def name(self) -> str: ...

    @property
    def models(self) -> Sequence[ModelSpec]: ...

    def stream(self, request: GenerationRequest, model: ModelSpec) -> AsyncIterator[ProviderEvent]: ...

    async def close(self) -> None: ...


class ExtractiveProvider:
    """Quotes the passages that best match the question (see `extractive`), streamed piece by piece."""

    def __init__(self) -> None:
        self._model = ModelSpec(
            name=EXTRACTIVE_MODEL, provider="extractive", context_window=0, quality_tier="extractive"
        )

    @property
    def name(self) -> str:
        return "extractive"

    @property
    def models(self) -> Sequence[ModelSpec]:
        return (self._model,)

    async def stream(self, request: GenerationRequest, model: ModelSpec) -> AsyncIterator[ProviderEvent]:
        question = request.question or next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        answer = extractive.compose_answer(question, request.passages)
        for piece in extractive.pieces(answer):
            yield TextDelta(piece)
            await asyncio.sleep(0)  # let the transport send each piece: this path exercises streaming
        usage = TokenUsage(
            input_tokens=tokens.count(question) + sum(tokens.count(p.text) for p in request.passages),
            output_tokens=tokens.count(answer),
        )
        yield Finished("stop", usage)

    async def close(self) -> None:
        return None


class OpenAICompatibleProvider:
    """One OpenAI-compatible endpoint (`base_url`) serving the models in `models`."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str,
        models: Sequence[ModelSpec],
        request_timeout_seconds: float,
        on_headers: HeadersObserver | None = None,
    ) -> None:
        self._name = name
        self._models = tuple(models)
        self._timeout = request_timeout_seconds
        self._on_headers = on_headers
        # Local endpoints take no key, but the SDK insists on one.
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=0)

    @property
    def name(self) -> str:
        return self._name

    @property
    def models(self) -> Sequence[ModelSpec]:
        return self._models

    async def stream(self, request: GenerationRequest, model: ModelSpec) -> AsyncIterator[ProviderEvent]:
        """Streams the completion; a body that ends without a finish reason raises `StreamCut`."""
        messages: list[Any] = [{"role": m.role, "content": m.content} for m in prompts.build_messages(request)]
        finish_reason: str | None = None
        usage: TokenUsage | None = None
        started = False
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                model=model.name,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                temperature=openai.omit if request.temperature is None else request.temperature,
                max_tokens=openai.omit if request.max_tokens is None else request.max_tokens,
                timeout=deadlines.timeout(self._timeout),
            )
            await self._observe(model, raw.headers)
            stream = raw.parse()
            try:
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage = TokenUsage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    for choice in chunk.choices:
                        if choice.delta.content:
                            started = True
                            yield TextDelta(choice.delta.content)
                        if choice.finish_reason:
                            finish_reason = choice.finish_reason
            finally:
                await stream.close()
        except openai.APIError as exc:
            if isinstance(exc, openai.APIStatusError):
                await self._observe(model, exc.response.headers)
            raise _translate(exc, self._name, model.name, started) from exc
        if finish_reason is None:
            raise StreamCut(f"{self._name}/{model.name}: stream ended without a finish reason")
        yield Finished(finish_reason, usage)

    async def _observe(self, model: ModelSpec, headers: Mapping[str, str]) -> None:
        if self._on_headers is None:
            return
        try:
            await self._on_headers(self._name, model, headers)
        except Exception:
            # Learning limits is an optimisation: a Redis hiccup must not fail the call itself.
            log.exception("recording rate-limit headers of %s/%s failed", self._name, model.name)

    async def close(self) -> None:
        await self._client.close()


def build(config: LLMConfig, on_headers: HeadersObserver | None = None) -> dict[str, Provider]:
    """One `OpenAICompatibleProvider` per configured provider, by name."""
    return {
        provider.name: OpenAICompatibleProvider(
            name=provider.name,
            base_url=provider.base_url,
            api_key=provider.api_key,
            models=[model.spec for model in provider.models],
            request_timeout_seconds=provider.request_timeout_seconds,
            on_headers=on_headers,
        )
        for provider in config.providers
    }


def _translate(exc: openai.APIError, provider: str, model: str, started: bool) -> ProviderError:
    """The SDK's exception as a `ProviderError` the router can act on."""
    where = f"{provider}/{model}"
    if started:
        return StreamCut(f"{where}: stream broke after it started: {exc.message}")
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeout(f"{where}: timed out")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        headers = dict(exc.response.headers)
        if status == 429:
            return ProviderRateLimited(
                f"{where}: rate limited",
                status=status,
                retry_after_seconds=_retry_after(exc.response.headers),
                headers=headers,
            )
        if status >= 500 or status in (408, 409):
            return ProviderUnavailable(f"{where}: HTTP {status}", status=status, headers=headers)
        return ProviderRejected(f"{where}: HTTP {status}: {exc.message}", status=status, headers=headers)
    return ProviderUnavailable(f"{where}: {exc.message}")


def _retry_after(headers: Any) -> float | None:
    for key, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(key)
        if value is None:
            continue
        try:
            return float(value) * scale
        except ValueError:
            continue  # an HTTP date: rare from LLM APIs, and the router does not wait on it yet
    return None
