"""Choosing a provider for a request, and falling back while it is still invisible to the caller.

The plan for a request is an ordered list of routes: the requested (or default) LLM model first when an
LLM is configured, and the extractive provider last, always. The router commits to a route at its
first token. Before that, a failure (an error status, a refused connection, no first token within
`first_token_timeout_seconds`) moves on to the next route, and the caller never sees it. After it, the
tokens already sent cannot be taken back: a failure ends the stream with `StreamInterrupted`
(UNAVAILABLE), never as a normal finish, so a caller cannot mistake half an answer for a whole one.

`generate()` (the unary call) has sent nothing until it returns, so it may fall back at any point.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pdfchat.common import deadlines
from pdfchat.common.errors import InvalidArgument, Unavailable
from pdfchat.orchestrator import prompts, tokens
from pdfchat.orchestrator.generation import (
    Finished,
    GenerationRequest,
    ModelSpec,
    ProviderError,
    ProviderEvent,
    ProviderTimeout,
    StreamCut,
    TextDelta,
    TokenUsage,
)
from pdfchat.orchestrator.providers import EXTRACTIVE_MODEL, Provider

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    provider: Provider
    model: ModelSpec


@dataclass(frozen=True)
class Completion:
    """The end of a successful generation."""

    finish_reason: str
    usage: TokenUsage
    model: ModelSpec
    provider: str
    cached: bool = False
    """Replayed from the response cache, not generated for this request."""


@dataclass
class RoutingTrace:
    """What the router did for one request, readable however the request ended (the ledger reads it)."""

    route: Route | None = None
    fallbacks: list[str] = field(default_factory=list)
    """Why each abandoned route was abandoned, in order."""
    output: list[str] = field(default_factory=list)
    """Text produced by the committed route so far."""
    reported_usage: TokenUsage | None = None
    first_token_at: float | None = None

    def usage(self, request: GenerationRequest) -> TokenUsage:
        """The provider's usage when it reported one; otherwise counted from the prompt and the output so far."""
        if self.reported_usage is not None:
            return self.reported_usage
        prompt = tokens.count_messages(prompts.build_messages(request))
        return TokenUsage(input_tokens=prompt, output_tokens=tokens.count("".join(self.output)))


class StreamInterrupted(Unavailable):
    """The committed provider failed after its first token; the partial answer must not pass for a whole one."""

    def __init__(self, message: str, usage: TokenUsage) -> None:
        super().__init__(message)
        self.usage = usage


class Router:
    def __init__(self, *, llm: Provider | None, extractive: Provider, first_token_timeout_seconds: float) -> None:
        self._llm = llm
        self._extractive = extractive
        self._first_token_timeout = first_token_timeout_seconds

    @property
    def providers(self) -> list[Provider]:
        return [p for p in (self._llm, self._extractive) if p is not None]

    def models(self) -> list[ModelSpec]:
        return [model for provider in self.providers for model in provider.models]

    def plan(self, request: GenerationRequest) -> list[Route]:
        """The routes to try in order; raises InvalidArgument for a model no provider serves."""
        fallback = Route(self._extractive, self._extractive.models[0])
        if request.model == EXTRACTIVE_MODEL:
            return [fallback]
        if self._llm is None:
            if request.model:
                raise InvalidArgument(
                    f"unknown model {request.model!r}: no LLM is configured (ListModels names the choices)"
                )
            return [fallback]
        if not request.model:
            return [Route(self._llm, self._llm.models[0]), fallback]
        for model in self._llm.models:
            if model.name == request.model:
                return [Route(self._llm, model), fallback]
        raise InvalidArgument(f"unknown model {request.model!r} (ListModels names the choices)")

    async def stream(self, request: GenerationRequest, trace: RoutingTrace) -> AsyncIterator[TextDelta | Completion]:
        """Yields the committed route's text deltas, then one `Completion`.

        Raises:
            StreamInterrupted: the committed route failed after its first token.
            Unavailable: every route failed before its first token.
        """
        for route in self.plan(request):
            opened = await self._open(route, request, trace)
            if opened is None:
                continue
            events, first = opened
            trace.route = route
            try:
                event = first
                while True:
                    if isinstance(event, Finished):
                        trace.reported_usage = event.usage
                        yield Completion(event.finish_reason, trace.usage(request), route.model, route.provider.name)
                        return
                    if trace.first_token_at is None:
                        trace.first_token_at = time.monotonic()
                    trace.output.append(event.text)
                    yield event
                    event = await anext(events)
            except (ProviderError, StopAsyncIteration) as exc:
                reason = str(exc) or "stream ended without a finish reason"
                log.warning("ending the stream with an error after %d pieces: %s", len(trace.output), reason)
                raise StreamInterrupted(
                    f"the answer from {route.model.name} broke off after it started: {reason}", trace.usage(request)
                ) from exc
            finally:
                await _close(events)
        raise Unavailable(f"no provider could answer: {'; '.join(trace.fallbacks)}")

    async def generate(self, request: GenerationRequest, trace: RoutingTrace) -> tuple[str, Completion]:
        """The whole answer; any route failing at any point falls back to the next (nothing was sent yet)."""
        for route in self.plan(request):
            opened = await self._open(route, request, trace)
            if opened is None:
                continue
            events, first = opened
            trace.route = route
            trace.output = []
            try:
                event = first
                while not isinstance(event, Finished):
                    if trace.first_token_at is None:
                        trace.first_token_at = time.monotonic()
                    trace.output.append(event.text)
                    event = await anext(events)
            except (ProviderError, StopAsyncIteration) as exc:
                self._abandon(route, trace, exc if isinstance(exc, ProviderError) else StreamCut("no finish reason"))
                trace.route, trace.first_token_at = None, None
                continue
            finally:
                await _close(events)
            trace.reported_usage = event.usage
            completion = Completion(event.finish_reason, trace.usage(request), route.model, route.provider.name)
            return "".join(trace.output), completion
        raise Unavailable(f"no provider could answer: {'; '.join(trace.fallbacks)}")

    async def _open(
        self, route: Route, request: GenerationRequest, trace: RoutingTrace
    ) -> tuple[AsyncIterator[ProviderEvent], ProviderEvent] | None:
        """Starts the route and waits for its first event; None (and the reason in `trace`) when it fails first."""
        events = aiter(route.provider.stream(request, route.model))
        try:
            first = await asyncio.wait_for(anext(events), timeout=deadlines.timeout(self._first_token_timeout))
        except TimeoutError:
            error: ProviderError = ProviderTimeout(f"{route.provider.name}/{route.model.name}: no first token in time")
        except StopAsyncIteration:
            error = StreamCut(f"{route.provider.name}/{route.model.name}: stream ended before any token")
        except ProviderError as exc:
            error = exc
        else:
            return events, first
        await _close(events)
        self._abandon(route, trace, error)
        return None

    def _abandon(self, route: Route, trace: RoutingTrace, error: ProviderError) -> None:
        trace.fallbacks.append(f"{error.kind}: {error}")
        log.warning("abandoning %s before its first token: %s", route.model.name, error)


async def _close(events: AsyncIterator[ProviderEvent]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
