"""Choosing a model for a request, keeping within limits, retrying, and falling back while invisible.

The plan for a request is an ordered list of routes (see `plan()`):

- a requested model first (then only its declared fallbacks); otherwise every configured model whose
  context window fits the request (estimated prompt tokens + max_tokens) and whose quality tier is at
  least the priority class's `min_tier`, ordered by the class's strategy: `cost` (expected price of
  this request), `latency` (EWMA of time to first token on this replica) or `quality` (tier, then cost);
- the extractive provider last, always: it answers from the passages when no LLM is configured or every
  LLM failed before its first token.

Each LLM route goes through, in order: the shared circuit breaker (an open breaker skips the route),
the distributed limiter (which may queue the caller and then yields a `Waiting` notice, or refuse when
the deadline cannot be met), the call, and on failure before the first token the retry policy (same
route again after a backoff, inside the deadline and the provider's retry budget). When a route gives
up, the next one comes from the failed model's declarative chain for that error class
(`fallbacks: {rate_limited: [...], unavailable: [...]}` in the YAML) or else from the plan.

When every LLM route was refused only for capacity (none failed), the caller gets RESOURCE_EXHAUSTED
with the shortest wait as retry information instead of the extractive stand-in: the models are fine,
just busy, and the caller can decide to come back.

The router commits to a route at its first token. Before that, failures are invisible to the caller.
After it, the tokens already sent cannot be taken back: a failure ends the stream with
`StreamInterrupted` (UNAVAILABLE, with the partial usage), never as a normal finish. `generate()` (the
unary call) has sent nothing until it returns, so it may fall back at any point. However a call ends
(finish, error, cut, cancellation), its reservation is settled with the tokens actually used.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from pdfchat.common import deadlines, identity
from pdfchat.common.errors import InvalidArgument, Unavailable
from pdfchat.orchestrator import prompts, tokens
from pdfchat.orchestrator.breaker import CircuitBreakers
from pdfchat.orchestrator.config import LLMConfig, ModelConfig, ProviderConfig
from pdfchat.orchestrator.generation import (
    Finished,
    GenerationRequest,
    ModelSpec,
    ProviderError,
    ProviderEvent,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    StreamCut,
    TextDelta,
    TokenUsage,
)
from pdfchat.orchestrator.learned import LearnedLimits, RateLimitHeaders
from pdfchat.orchestrator.limiter import CapacityRefused, Limiter, Reservation, Scope, Waiting
from pdfchat.orchestrator.providers import EXTRACTIVE_MODEL, Provider
from pdfchat.orchestrator.retry import RetryBudget, RetryPolicy

log = logging.getLogger(__name__)

LATENCY_ALPHA = 0.3
HEALTH_FAILURES = frozenset({"unavailable", "timeout", "cut"})
"""Error classes that count against a model's circuit breaker (not 429s, not the request's own 4xx)."""


def error_class(error: ProviderError) -> str:
    """The error class a fallback chain names: rate_limited, timeout, cut, rejected or unavailable."""
    if isinstance(error, ProviderRateLimited):
        return "rate_limited"
    if isinstance(error, ProviderTimeout):
        return "timeout"
    if isinstance(error, StreamCut):
        return "cut"
    if isinstance(error, ProviderRejected):
        return "rejected"
    return "unavailable"


@dataclass(frozen=True)
class Route:
    provider: Provider
    model: ModelSpec
    config: ModelConfig | None = None
    """The model's configuration; None for the extractive provider."""

    @property
    def key(self) -> str:
        """`provider/model`: the scope of its limits, breaker and cooldown in Redis."""
        return f"{self.provider.name}/{self.model.name}"


@dataclass(frozen=True)
class Completion:
    """The end of a successful generation."""

    finish_reason: str
    usage: TokenUsage
    model: ModelSpec
    provider: str
    cached: bool = False
    """Replayed from the response cache, not generated for this request."""


StreamEvent = TextDelta | Completion | Waiting


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
    retries: int = 0
    queued_seconds: float = 0.0
    """The expected wait announced when the request had to queue for capacity."""
    failure_classes: list[str] = field(default_factory=list)
    """The error class of each abandoned LLM route, in order."""
    capacity_retry_after: float | None = None

    def usage(self, request: GenerationRequest) -> TokenUsage:
        """The provider's usage when it reported one; otherwise counted from the prompt and the output so far."""
        if self.reported_usage is not None:
            return self.reported_usage
        return TokenUsage(input_tokens=estimate_input(request), output_tokens=tokens.count("".join(self.output)))


class StreamInterrupted(Unavailable):
    """The committed provider failed after its first token; the partial answer must not pass for a whole one."""

    def __init__(self, message: str, usage: TokenUsage) -> None:
        super().__init__(message)
        self.usage = usage


def estimate_input(request: GenerationRequest) -> int:
    return tokens.count_messages(prompts.build_messages(request))


@dataclass(frozen=True)
class RouterControls:
    """The shared (Redis) machinery; each part is optional so the router also runs without Redis."""

    limiter: Limiter | None = None
    breakers: CircuitBreakers | None = None
    learned: LearnedLimits | None = None
    retry_budget: RetryBudget | None = None
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    min_call_seconds: float = 0.5
    """The shortest an LLM call can take: no attempt or wait starts without this much deadline left."""
    estimated_output_tokens: int = 256
    """Output tokens reserved for a request without max_tokens, until the actual usage settles it."""


@dataclass
class _Opened:
    events: AsyncIterator[ProviderEvent]
    first: ProviderEvent
    reservation: Reservation | None
    started: float


class Router:
    def __init__(
        self,
        *,
        extractive: Provider,
        first_token_timeout_seconds: float,
        llm: Provider | None = None,
        config: LLMConfig | None = None,
        providers: Mapping[str, Provider] | None = None,
        controls: RouterControls | None = None,
    ) -> None:
        self._extractive = extractive
        self._first_token_timeout = first_token_timeout_seconds
        self._controls = controls or RouterControls()
        self._latency: dict[str, float] = {}
        self._retired: list[Provider] = []
        if llm is not None:
            config = LLMConfig(
                providers=(
                    ProviderConfig(
                        name=llm.name, base_url="http://unused", models=tuple(ModelConfig(m) for m in llm.models)
                    ),
                ),
            )
            providers = {llm.name: llm}
        self._config = LLMConfig()
        self._providers: dict[str, Provider] = {}
        self._routes: list[Route] = []
        self.apply(config or LLMConfig(), providers or {})

    def apply(self, config: LLMConfig, providers: Mapping[str, Provider]) -> None:
        """Switches to a new configuration; calls in flight finish on the providers they started with."""
        routes = [
            Route(providers[provider.name], model.spec, model)
            for provider in config.providers
            for model in provider.models
            if provider.name in providers
        ]
        self._retired.extend(p for name, p in self._providers.items() if providers.get(name) is not p)
        self._config, self._providers, self._routes = config, dict(providers), routes

    @property
    def config(self) -> LLMConfig:
        return self._config

    @property
    def providers(self) -> list[Provider]:
        return [*self._providers.values(), *self._retired, self._extractive]

    def models(self) -> list[ModelSpec]:
        return [route.model for route in self._routes] + list(self._extractive.models)

    def latency(self, route: Route) -> float | None:
        return self._latency.get(route.key)

    # -- planning

    def plan(self, request: GenerationRequest, trace: RoutingTrace | None = None) -> list[Route]:
        """The routes to try in order; raises InvalidArgument for a model no provider serves."""
        fallback = Route(self._extractive, self._extractive.models[0])
        if request.model == EXTRACTIVE_MODEL:
            return [fallback]
        routes = self._routes
        if request.model:
            requested = next((r for r in routes if r.model.name == request.model), None)
            if requested is None:
                detail = "no LLM is configured" if not routes else "ListModels names the choices"
                raise InvalidArgument(f"unknown model {request.model!r} ({detail})")
            if not self._fits(requested, request, trace):
                return [fallback]
            return [requested, fallback]
        policy = self._config.batch if request.priority == "batch" else self._config.interactive
        floor = self._config.tier_rank(policy.min_tier) if policy.min_tier else -1
        eligible = [
            r for r in routes if self._config.tier_rank(r.model.quality_tier) >= floor and self._fits(r, request, trace)
        ]
        eligible.sort(key=lambda r: self._rank(r, request, policy.strategy))
        return [*eligible, fallback]

    def _fits(self, route: Route, request: GenerationRequest, trace: RoutingTrace | None) -> bool:
        window = route.model.context_window
        needed = estimate_input(request) + (request.max_tokens or 0)
        if window and needed > window:
            if trace is not None:
                trace.fallbacks.append(f"context: {route.model.name} holds {window} tokens, request needs ~{needed}")
            return False
        return True

    def _rank(self, route: Route, request: GenerationRequest, strategy: str) -> tuple[float, ...]:
        output = request.max_tokens or self._controls.estimated_output_tokens
        cost = estimate_input(request) * route.model.input_price_per_mtok + output * route.model.output_price_per_mtok
        latency = self._latency.get(route.key, 0.0)  # unmeasured models go first, to be measured
        if strategy == "latency":
            return (latency, cost)
        if strategy == "quality":
            return (-self._config.tier_rank(route.model.quality_tier), cost, latency)
        return (cost, latency)

    def _next_routes(self, failed: Route, cls: str, queue: deque[Route], tried: set[str]) -> deque[Route]:
        """The rest of the plan after `failed` gave up with error class `cls`: its declared chain, if any."""
        chain = failed.config.fallbacks.get(cls) if failed.config is not None else None
        if chain is None:
            return queue
        by_name = {r.model.name: r for r in self._routes}
        fallback = Route(self._extractive, self._extractive.models[0])
        routes = [by_name[name] for name in chain if name in by_name and by_name[name].key not in tried]
        return deque([*routes, fallback])

    # -- running

    async def stream(self, request: GenerationRequest, trace: RoutingTrace) -> AsyncIterator[StreamEvent]:
        """Yields `Waiting` (at most once per queued route), the committed route's deltas, then one `Completion`.

        Raises:
            StreamInterrupted: the committed route failed after its first token.
            CapacityRefused: every LLM route was refused for capacity within the deadline.
            Unavailable: every route failed before its first token.
        """
        async for event in self._run(request, trace, streaming=True):
            yield event

    async def generate(self, request: GenerationRequest, trace: RoutingTrace) -> tuple[str, Completion]:
        """The whole answer; any route failing at any point falls back to the next (nothing was sent yet)."""
        async for event in self._run(request, trace, streaming=False):
            if isinstance(event, Completion):
                return "".join(trace.output), event
        raise Unavailable(f"no provider could answer: {'; '.join(trace.fallbacks)}")  # pragma: no cover

    async def _run(
        self, request: GenerationRequest, trace: RoutingTrace, *, streaming: bool
    ) -> AsyncIterator[StreamEvent]:
        queue = deque(self.plan(request, trace))
        tried: set[str] = set()
        while queue:
            route = queue.popleft()
            if route.key in tried:
                continue
            tried.add(route.key)
            if route.config is None:
                self._refuse_if_only_busy(trace)
            opened: _Opened | None = None
            async for step in self._open(route, request, trace):
                if isinstance(step, Waiting):
                    yield step
                else:
                    opened = step
            if opened is None:
                queue = self._next_routes(route, trace.failure_classes[-1] if route.config else "", queue, tried)
                continue
            trace.route, trace.output, trace.reported_usage = route, [], None
            outcome: ProviderError | None = None
            finished: Finished | None = None
            try:
                event = opened.first
                while not isinstance(event, Finished):
                    if trace.first_token_at is None:
                        trace.first_token_at = time.monotonic()
                    trace.output.append(event.text)
                    if streaming:
                        yield event
                    event = await anext(opened.events)
                trace.reported_usage = event.usage
                finished = event
            except (ProviderError, StopAsyncIteration) as exc:
                outcome = exc if isinstance(exc, ProviderError) else StreamCut("stream ended without a finish reason")
            finally:
                await _close(opened.events)
                await self._conclude(route, opened, trace, request, outcome, finished)
            if finished is not None:
                yield Completion(finished.finish_reason, trace.usage(request), route.model, route.provider.name)
                return
            assert outcome is not None
            if streaming:
                reason = str(outcome) or "stream ended without a finish reason"
                log.warning("ending the stream with an error after %d pieces: %s", len(trace.output), reason)
                raise StreamInterrupted(
                    f"the answer from {route.model.name} broke off after it started: {reason}", trace.usage(request)
                ) from outcome
            cls = error_class(outcome)
            self._abandon(route, trace, cls, f"{outcome.kind}: {outcome}")
            trace.route, trace.first_token_at, trace.output, trace.reported_usage = None, None, [], None
            queue = self._next_routes(route, cls, queue, tried)
        self._refuse_if_only_busy(trace)
        raise Unavailable(f"no provider could answer: {'; '.join(trace.fallbacks)}")

    def _refuse_if_only_busy(self, trace: RoutingTrace) -> None:
        """RESOURCE_EXHAUSTED when every LLM route tried was refused for capacity alone."""
        classes = trace.failure_classes
        if classes and all(c == "capacity" for c in classes):
            raise CapacityRefused(
                f"every model is at its limits for longer than the deadline allows: {'; '.join(trace.fallbacks)}",
                trace.capacity_retry_after,
                "capacity",
            )

    def _managed(self, route: Route) -> bool:
        return route.config is not None

    def _min_call(self, route: Route) -> float:
        return max(self._controls.min_call_seconds, self._latency.get(route.key, 0.0))

    async def _scopes(self, route: Route, tenant: str | None) -> list[Scope]:
        assert route.config is not None
        config, controls = self._config, self._controls
        model_limits = route.config.limits
        if controls.learned is not None:
            model_limits = await controls.learned.resolve(route.key, model_limits)
        # Batch requests keep off `interactive_reserve` of these while interactive traffic is about.
        reserve = config.interactive_reserve
        scopes: list[Scope] = []
        if config.global_limits != type(config.global_limits)():
            scopes.append(Scope("global", config.global_limits, reserve))
        scopes.append(Scope(f"model:{route.key}", model_limits, reserve))
        if tenant is not None and config.tenant_limits != type(config.tenant_limits)():
            scopes.append(Scope(f"tenant:{tenant}", config.tenant_limits))
        return scopes

    def _estimate(self, request: GenerationRequest) -> int:
        return estimate_input(request) + (request.max_tokens or self._controls.estimated_output_tokens)

    async def _open(
        self, route: Route, request: GenerationRequest, trace: RoutingTrace
    ) -> AsyncIterator[Waiting | _Opened]:
        """Gets `route` to its first event, yielding `Waiting` while queued; yields nothing more when it fails.

        A failure is recorded in `trace` (reason and error class). Retries happen here, before the first token.
        """
        controls = self._controls
        managed = self._managed(route)
        attempt = 0
        while True:
            reservation: Reservation | None = None
            sent = False
            handed_over = False
            try:
                if managed and controls.breakers is not None:
                    decision = await controls.breakers.allow(route.key)
                    if not decision.allowed:
                        self._abandon(
                            route,
                            trace,
                            "breaker_open",
                            f"circuit {decision.state} for another {decision.retry_after_seconds:.1f} s",
                        )
                        return
                if managed and controls.limiter is not None:
                    caller = identity.current()
                    tenant = caller.tenant_id if caller is not None else None
                    try:
                        async for step in controls.limiter.admit(
                            functools.partial(self._scopes, route, tenant),
                            self._estimate(request),
                            interactive=request.priority != "batch",
                            tenant=tenant or "",
                            cooldown=route.key,
                            min_call_seconds=self._min_call(route),
                        ):
                            if isinstance(step, Waiting):
                                trace.queued_seconds = max(trace.queued_seconds, step.expected_wait_seconds)
                                yield step
                            else:
                                reservation = step
                    except CapacityRefused as refused:
                        if refused.retry_after_seconds is not None:
                            previous = trace.capacity_retry_after
                            trace.capacity_retry_after = min(
                                previous or refused.retry_after_seconds, refused.retry_after_seconds
                            )
                        self._abandon(route, trace, "capacity", refused.message)
                        return
                if managed and attempt == 0 and controls.retry_budget is not None:
                    await controls.retry_budget.record_attempt(route.provider.name)
                started = time.monotonic()
                events = aiter(route.provider.stream(request, route.model))
                sent = True
                try:
                    first = await asyncio.wait_for(anext(events), timeout=deadlines.timeout(self._first_token_timeout))
                except TimeoutError:
                    error: ProviderError = ProviderTimeout(f"{route.key}: no first token in time")
                except StopAsyncIteration:
                    error = StreamCut(f"{route.key}: stream ended before any token")
                except ProviderError as exc:
                    error = exc
                except BaseException:
                    await _close(events)
                    raise
                else:
                    if reservation is not None:
                        reservation.answered()
                    handed_over = True
                    yield _Opened(events, first, reservation, started)
                    return
                await _close(events)
                cls = error_class(error)
                if managed:
                    await self._failed(route, error, cls, reservation, request)
                    reservation = None
                delay = controls.retry_policy.next_delay(error, attempt, self._min_call(route)) if managed else None
                if delay is not None and (
                    controls.retry_budget is None or await controls.retry_budget.try_spend(route.provider.name)
                ):
                    trace.retries += 1
                    attempt += 1
                    log.info("retrying %s in %.2f s after %s", route.key, delay, error)
                    await asyncio.sleep(delay)
                    continue
                self._abandon(route, trace, cls, f"{error.kind}: {error}")
                return
            finally:
                if reservation is not None and not handed_over:
                    # Cancelled (or failed) between reserving and a provider answer: a request that never
                    # left gives its capacity back; one that did counts its prompt.
                    await reservation.settle(estimate_input(request) if sent else 0, cancel=not sent)

    async def _failed(
        self, route: Route, error: ProviderError, cls: str, reservation: Reservation | None, request: GenerationRequest
    ) -> None:
        """Accounting after a failure before the first token: settle, breaker, shared cooldown, learning."""
        controls = self._controls
        if reservation is not None:
            # A refused or failed call generated nothing; a timeout may have been charged for its prompt.
            await reservation.settle(estimate_input(request) if cls == "timeout" else 0)
        if controls.breakers is not None and cls in HEALTH_FAILURES:
            state = await controls.breakers.record_failure(route.key)
            if state != "closed":
                log.warning("circuit of %s is %s after %s", route.key, state, error)
        if cls == "rate_limited" and controls.limiter is not None:
            wait = error.retry_after_seconds or controls.retry_policy.base_seconds
            await controls.limiter.set_cooldown(route.key, wait)
            limits = RateLimitHeaders.parse(error.headers)
            if controls.learned is not None and limits.limit_requests is None and limits.limit_tokens is None:
                seen = await controls.limiter.usage(f"model:{route.key}")
                await controls.learned.observe_rate_limited(route.key, seen.requests - 1)

    async def _conclude(
        self,
        route: Route,
        opened: _Opened,
        trace: RoutingTrace,
        request: GenerationRequest,
        outcome: ProviderError | None,
        finished: Finished | None,
    ) -> None:
        """Accounting after a committed call ends in any way: settle the actual usage, breaker, latency."""
        if opened.reservation is not None:
            used = trace.usage(request)
            await opened.reservation.settle(used.input_tokens + used.output_tokens)
        if not self._managed(route):
            return
        if trace.first_token_at is not None:
            elapsed = trace.first_token_at - opened.started
            previous = self._latency.get(route.key)
            self._latency[route.key] = (
                elapsed if previous is None else LATENCY_ALPHA * elapsed + (1 - LATENCY_ALPHA) * previous
            )
        breakers = self._controls.breakers
        if breakers is None:
            return
        if finished is not None:
            await asyncio.shield(breakers.record_success(route.key))
        elif outcome is not None and error_class(outcome) in HEALTH_FAILURES:
            await asyncio.shield(breakers.record_failure(route.key))

    async def observe_headers(self, provider: str, model: ModelSpec, headers: Mapping[str, str]) -> None:
        """Learns limits from a provider's `x-ratelimit-*` headers (the providers' `on_headers` hook)."""
        learned, limiter = self._controls.learned, self._controls.limiter
        if learned is None:
            return
        key = f"{provider}/{model.name}"
        limits = RateLimitHeaders.parse(headers)
        await learned.observe(key, limits)
        unknown = limits.limit_requests is None and limits.limit_tokens is None
        if unknown and limiter is not None and limits.exhausted_for_seconds > 0:
            await limiter.set_cooldown(key, limits.exhausted_for_seconds)

    def _abandon(self, route: Route, trace: RoutingTrace, cls: str, reason: str) -> None:
        trace.fallbacks.append(f"{route.model.name}: {cls}: {reason}")
        if route.config is not None:
            trace.failure_classes.append(cls)
        log.warning("abandoning %s before its first token (%s): %s", route.key, cls, reason)

    async def close(self) -> None:
        for provider in self.providers:
            await provider.close()


async def _close(events: AsyncIterator[ProviderEvent]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
