"""The circuit breaker shared through Redis: two instances (two replicas) see one state and one probe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from pdfchat.orchestrator.breaker import CircuitBreakers

pytestmark = pytest.mark.integration

MODEL = "sim/sim-model"


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[tuple[CircuitBreakers, CircuitBreakers]]:
    prefix = f"test:{uuid.uuid4().hex[:10]}"
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    options = {"prefix": prefix, "failure_threshold": 3, "open_seconds": 0.5, "probe_seconds": 0.5}
    yield CircuitBreakers(first, **options), CircuitBreakers(second, **options)  # type: ignore[arg-type]
    await first.aclose()
    await second.aclose()


async def test_failures_on_two_replicas_open_the_circuit_for_both(
    replicas: tuple[CircuitBreakers, CircuitBreakers],
) -> None:
    a, b = replicas
    assert (await a.allow(MODEL)).allowed
    await a.record_failure(MODEL)
    await b.record_failure(MODEL)
    assert await a.state(MODEL) == "closed"
    assert await b.record_failure(MODEL) == "open"
    for breaker in (a, b):
        decision = await breaker.allow(MODEL)
        assert not decision.allowed
        assert decision.state == "open"
        assert 0 < decision.retry_after_seconds <= 0.5


async def test_a_success_resets_the_consecutive_failures(replicas: tuple[CircuitBreakers, CircuitBreakers]) -> None:
    a, b = replicas
    await a.record_failure(MODEL)
    await a.record_failure(MODEL)
    await b.record_success(MODEL)
    await a.record_failure(MODEL)
    assert await b.state(MODEL) == "closed"


async def test_half_open_lets_exactly_one_probe_through_and_its_success_closes(
    replicas: tuple[CircuitBreakers, CircuitBreakers],
) -> None:
    a, b = replicas
    for _ in range(3):
        await a.record_failure(MODEL)
    await asyncio.sleep(0.6)
    decisions = await asyncio.gather(*(breaker.allow(MODEL) for breaker in (a, b, a, b)))
    assert sum(d.allowed for d in decisions) == 1
    assert [d.state for d in decisions if d.allowed] == ["probe"]
    assert all(d.state == "half_open" for d in decisions if not d.allowed)
    await b.record_success(MODEL)
    assert await a.state(MODEL) == "closed"
    assert (await a.allow(MODEL)).allowed


async def test_a_failed_probe_opens_again_and_a_lost_probe_is_replaced(
    replicas: tuple[CircuitBreakers, CircuitBreakers],
) -> None:
    a, b = replicas
    for _ in range(3):
        await a.record_failure(MODEL)
    await asyncio.sleep(0.6)
    assert (await a.allow(MODEL)).state == "probe"
    assert await a.record_failure(MODEL) == "open"
    assert not (await b.allow(MODEL)).allowed
    await asyncio.sleep(0.6)
    assert (await b.allow(MODEL)).state == "probe"
    # The probe's replica never reports (it died): after the probe lease another caller may probe.
    assert not (await a.allow(MODEL)).allowed
    await asyncio.sleep(0.6)
    assert (await a.allow(MODEL)).state == "probe"
