"""Limits learned from x-ratelimit headers: shared through Redis, so a burst at an unconfigured endpoint
succeeds (or is refused with retry information) instead of turning into a storm of 429s."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from pdfchat.common import deadlines
from pdfchat.orchestrator.config import ScopeLimits
from pdfchat.orchestrator.generation import GenerationRequest, Passage
from pdfchat.orchestrator.learned import LearnedLimits, RateLimitHeaders, parse_duration
from pdfchat.orchestrator.limiter import CapacityRefused, Limiter
from pdfchat.orchestrator.router import Completion, Router, RouterControls, RoutingTrace
from pdfchat_tools.llm_sim import SimServer

REQUEST = GenerationRequest(question="Where is it?", passages=(Passage("It is in Paris. Really.", page=5),))


def test_reset_durations_in_openai_format() -> None:
    assert parse_duration("1m30s") == 90
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("6m0s") == 360
    assert parse_duration("2") == 2
    assert parse_duration("soon") is None


def test_headers_parse_case_insensitively() -> None:
    limits = RateLimitHeaders.parse(
        {
            "X-RateLimit-Limit-Requests": "600",
            "x-ratelimit-limit-tokens": "100000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1.5s",
        }
    )
    assert (limits.limit_requests, limits.limit_tokens) == (600, 100_000)
    assert limits.exhausted_for_seconds == 1.5


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.mark.integration
async def test_learned_limits_are_shared_and_configured_ones_win(redis: Redis, redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex[:10]}"
    other = Redis.from_url(redis_url)
    try:
        teacher, pupil = LearnedLimits(redis, prefix=prefix), LearnedLimits(other, prefix=prefix, cache_seconds=0)
        assert await pupil.resolve("p/m", ScopeLimits()) == ScopeLimits(max_concurrency=2)  # discovery
        await teacher.observe("p/m", RateLimitHeaders(limit_requests=60, limit_tokens=9000))
        assert await pupil.resolve("p/m", ScopeLimits()) == ScopeLimits(rpm=60, tpm=9000)
        assert await pupil.resolve("p/m", ScopeLimits(tpm=500)) == ScopeLimits(rpm=60, tpm=500)
        await teacher.observe_rate_limited("p/m", 3)  # too small a sample to learn from
        await teacher.observe_rate_limited("p/m", 40)
        assert (await pupil.resolve("p/m", ScopeLimits())).rpm == 40
    finally:
        await other.aclose()


@pytest.mark.integration
async def test_burst_at_an_unconfigured_endpoint_gets_no_storm_of_429s(
    sim: SimServer, redis: Redis, router_on_sim: Callable[..., Router]
) -> None:
    sim.configure(rpm_limit=10, time_to_first_token_seconds=0.05)
    prefix = f"test:{uuid.uuid4().hex[:10]}"
    controls = RouterControls(
        limiter=Limiter(redis, prefix=prefix, poll_seconds=0.02),
        learned=LearnedLimits(redis, prefix=prefix),
        min_call_seconds=0.2,
    )
    router = router_on_sim(controls)

    waits: list[float] = []

    async def ask() -> str:
        deadlines.bind(3.0)
        try:
            async for event in router.stream(REQUEST, RoutingTrace()):
                if isinstance(event, Completion):
                    return event.provider
        except CapacityRefused as refused:
            waits.append(refused.retry_after_seconds or 0.0)
            return "refused"
        return "none"

    outcomes = await asyncio.gather(*(ask() for _ in range(30)))
    answered = [o for o in outcomes if o not in ("refused", "extractive")]
    assert len(answered) == 10, outcomes
    assert outcomes.count("refused") == 20
    assert all(wait > 3 for wait in waits)  # retry information: longer than the 3 s deadline
    assert sim.stats()["counters"].get("status_429", 0) == 0
    await router.close()
