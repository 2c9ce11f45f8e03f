"""Retries: which failures, how long (full jitter, Retry-After as a floor), never past the deadline, budgeted."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from pdfchat.common import deadlines
from pdfchat.orchestrator.breaker import CircuitBreakers
from pdfchat.orchestrator.generation import (
    GenerationRequest,
    Passage,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from pdfchat.orchestrator.learned import LearnedLimits
from pdfchat.orchestrator.limiter import Limiter
from pdfchat.orchestrator.retry import RetryBudget, RetryPolicy, is_retryable
from pdfchat.orchestrator.router import Router, RouterControls, RoutingTrace
from pdfchat_tools.llm_sim import SimServer

REQUEST = GenerationRequest(question="Where is it?", passages=(Passage("It is in Paris. Really.", page=5),))


def test_only_transient_failures_are_retried() -> None:
    assert is_retryable(ProviderUnavailable("dropped"))
    assert is_retryable(ProviderUnavailable("503", status=503))
    assert is_retryable(ProviderTimeout("slow"))
    assert is_retryable(ProviderRateLimited("429", status=429))
    for status in (408, 409):
        assert is_retryable(ProviderUnavailable(str(status), status=status))
        assert is_retryable(ProviderRejected(str(status), status=status))
    for status in (400, 401, 403, 404, 422):
        assert not is_retryable(ProviderRejected(str(status), status=status))


def test_full_jitter_stays_under_the_exponential_ceiling_and_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(base_seconds=0.5, cap_seconds=4)
    rng = random.Random(7)
    for attempt in range(6):
        delays = [policy.backoff(attempt, rng) for _ in range(200)]
        ceiling = min(4, 0.5 * 2**attempt)
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range, not bunched
    assert all(policy.delay(0, 3.0, rng) >= 3.0 for _ in range(50))


def test_no_retry_that_cannot_finish_inside_the_deadline() -> None:
    policy = RetryPolicy(max_attempts=5)
    limited = ProviderRateLimited("429", status=429, retry_after_seconds=2.0)
    token = deadlines.bind(2.2)
    try:
        assert policy.next_delay(limited, 0, min_call_seconds=0.5) is None
        assert policy.next_delay(ProviderUnavailable("503", status=503), 0, min_call_seconds=0.5) is not None
    finally:
        deadlines.reset(token)
    assert policy.next_delay(limited, 0, min_call_seconds=0.5) is not None
    assert policy.next_delay(limited, 4, min_call_seconds=0.5) is None  # attempts used up
    assert RetryPolicy(max_wait_seconds=1).next_delay(limited, 0, 0.5) is None  # too long: fall over instead


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.mark.integration
async def test_retry_budget_is_shared_and_bounded(redis: Redis, redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex[:10]}"
    other = Redis.from_url(redis_url)
    try:
        a = RetryBudget(redis, prefix=prefix, ratio=0.5, min_retries=1)
        b = RetryBudget(other, prefix=prefix, ratio=0.5, min_retries=1)
        for _ in range(4):
            await a.record_attempt("sim")
        # 1 + 0.5 * 4 = 3 retries in the window, whichever replica spends them.
        spent = [await budget.try_spend("sim") for budget in (a, b, a, b, a)]
        assert spent == [True, True, True, False, False]
    finally:
        await other.aclose()


def managed_router(router_on_sim: Callable[..., Router], redis: Redis, **policy: float) -> tuple[Router, Limiter]:
    prefix = f"test:{uuid.uuid4().hex[:10]}"
    limiter = Limiter(redis, prefix=prefix, poll_seconds=0.02)
    controls = RouterControls(
        limiter=limiter,
        breakers=CircuitBreakers(redis, prefix=prefix),
        learned=LearnedLimits(redis, prefix=prefix),
        retry_budget=RetryBudget(redis, prefix=prefix),
        retry_policy=RetryPolicy(**policy),  # type: ignore[arg-type]
        min_call_seconds=0.3,
    )
    router = router_on_sim(controls, input_price=1, output_price=2)
    return router, limiter


@pytest.mark.integration
async def test_429_is_retried_after_its_retry_after(
    sim: SimServer, redis: Redis, router_on_sim: Callable[..., Router]
) -> None:
    sim.configure(next_faults=["429"])  # the simulator answers it with Retry-After: 1 s
    router, _ = managed_router(router_on_sim, redis)
    trace = RoutingTrace()
    started = time.monotonic()
    _text, end = await router.generate(REQUEST, trace)
    assert time.monotonic() - started >= 1.0
    assert end.model.name == "sim-model"
    assert trace.retries == 1
    assert sim.stats()["counters"]["status_429"] == 1
    await router.close()


@pytest.mark.integration
async def test_429_whose_wait_passes_the_deadline_falls_over_at_once(
    sim: SimServer, redis: Redis, router_on_sim: Callable[..., Router]
) -> None:
    sim.configure(next_faults=["429"])
    router, _ = managed_router(router_on_sim, redis)
    trace = RoutingTrace()
    token = deadlines.bind(1.2)
    started = time.monotonic()
    try:
        _, end = await router.generate(REQUEST, trace)
    finally:
        deadlines.reset(token)
    assert time.monotonic() - started < 0.9
    assert end.provider == "extractive"
    assert trace.retries == 0
    assert "rate_limited" in trace.fallbacks[0]
    await router.close()


@pytest.mark.integration
async def test_4xx_is_not_retried(sim: SimServer, redis: Redis, router_on_sim: Callable[..., Router]) -> None:
    sim.configure(api_key="secret")
    router, _ = managed_router(router_on_sim, redis)
    trace = RoutingTrace()
    _, end = await router.generate(REQUEST, trace)
    assert end.provider == "extractive"
    assert trace.retries == 0
    assert sim.stats()["counters"]["status_401"] == 1
    assert "rejected" in trace.fallbacks[0]
    await router.close()


@pytest.mark.integration
async def test_5xx_is_retried_with_backoff_until_it_succeeds(
    sim: SimServer, redis: Redis, router_on_sim: Callable[..., Router]
) -> None:
    sim.configure(next_faults=["503", "500"])
    router, limiter = managed_router(router_on_sim, redis, base_seconds=0.05)
    trace = RoutingTrace()
    _, end = await router.generate(REQUEST, trace)
    assert end.model.name == "sim-model"
    assert trace.retries == 2
    usage = await limiter.usage("model:sim/sim-model".replace("sim/", f"{router.models()[0].provider}/"))
    assert usage.in_flight == 0
    await router.close()
