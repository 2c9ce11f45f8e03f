"""The Redis limiter: accuracy across processes, reserve/settle (cancellation too), queue or refuse by deadline."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from pdfchat.common import deadlines
from pdfchat.orchestrator.config import ScopeLimits
from pdfchat.orchestrator.limiter import CapacityRefused, Limiter, Reservation, Scope, Waiting

pytestmark = pytest.mark.integration

_WORKER = textwrap.dedent(
    """
    import asyncio, json, random, sys, time
    from redis.asyncio import Redis
    from pdfchat.orchestrator.config import ScopeLimits
    from pdfchat.orchestrator.limiter import Limiter, Scope

    url, prefix, window, rpm, tpm, workers, seconds = sys.argv[1:8]

    async def main():
        redis = Redis.from_url(url)
        limiter = Limiter(redis, prefix=prefix, window_seconds=float(window), poll_seconds=0.01)
        scopes = [Scope("model:p/m", ScopeLimits(rpm=int(rpm), tpm=int(tpm)))]
        admitted = []
        rng = random.Random()
        stop_at = time.monotonic() + float(seconds)

        async def worker():
            while time.monotonic() < stop_at:
                tokens = rng.randint(5, 40)
                reservation, wait, _ = await limiter.try_reserve(scopes, tokens)
                if reservation is None:
                    await asyncio.sleep(min(wait, 0.05) * rng.random())
                    continue
                await reservation.settle(tokens)
                admitted.append((reservation.admitted_at_ms, tokens))

        await asyncio.gather(*(worker() for _ in range(int(workers))))
        print(json.dumps(admitted))
        await redis.aclose()

    asyncio.run(main())
    """
)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:10]}"


def max_in_window(events: list[tuple[int, int]], window_ms: int, weight: bool) -> int:
    """The most requests (or tokens, with `weight`) admitted in any sliding window of `window_ms`."""
    events = sorted(events)
    best, total, start = 0, 0, 0
    for at, tokens in events:
        total += tokens if weight else 1
        while events[start][0] <= at - window_ms:
            total -= events[start][1] if weight else 1
            start += 1
        best = max(best, total)
    return best


def test_four_processes_at_high_concurrency_share_one_limit_without_overshoot(redis_url: str) -> None:
    # 4 processes x 50 concurrent callers hammer one limit for 3 windows of 2 s each.
    key_prefix, window, rpm, tpm = prefix(), 2.0, 150, 2500
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, redis_url, key_prefix, str(window), str(rpm), str(tpm), "50", "6"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    events: list[tuple[int, int]] = []
    per_process: list[int] = []
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        admitted = [tuple(e) for e in json.loads(out)]
        per_process.append(len(admitted))
        events += admitted  # type: ignore[arg-type]
    window_ms = round(window * 1000)
    busiest_requests = max_in_window(events, window_ms, weight=False)
    busiest_tokens = max_in_window(events, window_ms, weight=True)
    overshoot = max(busiest_requests / rpm, busiest_tokens / tpm) - 1
    print(f"limiter overshoot: requests {busiest_requests}/{rpm}, tokens {busiest_tokens}/{tpm} -> {overshoot:+.2%}")
    assert overshoot <= 0.02
    assert all(count > 0 for count in per_process), "every process got a share"
    # And the limit is used, not starved: at least one window was (nearly) full.
    assert max(busiest_requests / rpm, busiest_tokens / tpm) >= 0.9


async def test_settle_replaces_the_estimate_and_frees_the_concurrency_slot(redis: Redis) -> None:
    limiter = Limiter(redis, prefix=prefix())
    scopes = [Scope("model:p/m", ScopeLimits(tpm=1000, max_concurrency=2))]
    first = await limiter.reserve(scopes, 400)
    second = await limiter.reserve(scopes, 400)
    assert (await limiter.usage("model:p/m")).tokens == 800
    refused, wait, blocked = await limiter.try_reserve(scopes, 100)
    assert refused is None
    assert wait > 0
    assert "concurrency" in blocked
    await first.settle(150)
    usage = await limiter.usage("model:p/m")
    assert (usage.requests, usage.tokens, usage.in_flight) == (2, 550, 1)
    await first.settle(999)  # settling twice changes nothing
    assert (await limiter.usage("model:p/m")).tokens == 550
    await second.settle(0, cancel=True)  # never sent: its request and tokens are withdrawn
    usage = await limiter.usage("model:p/m")
    assert (usage.requests, usage.tokens, usage.in_flight) == (1, 150, 0)


async def test_a_cancelled_call_settles_and_releases_its_slot(redis: Redis) -> None:
    limiter = Limiter(redis, prefix=prefix())
    scopes = [Scope("model:p/m", ScopeLimits(tpm=10_000, max_concurrency=1))]
    started = asyncio.Event()

    async def call() -> None:
        reservation = await limiter.reserve(scopes, 500)
        used = 0
        try:
            started.set()
            for _ in range(100):
                await asyncio.sleep(0.01)
                used += 7
        finally:
            await reservation.settle(used)

    task = asyncio.create_task(call())
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    usage = await limiter.usage("model:p/m")
    assert usage.in_flight == 0
    assert 0 < usage.tokens < 500
    assert (await limiter.try_reserve(scopes, 100))[0] is not None


async def test_caller_waits_when_capacity_frees_within_its_deadline(redis: Redis) -> None:
    limiter = Limiter(redis, prefix=prefix(), window_seconds=1.5, poll_seconds=0.02)
    scopes = [Scope("model:p/m", ScopeLimits(rpm=1))]
    await limiter.reserve(scopes, 10)
    token = deadlines.bind(5.0)
    try:
        steps = [step async for step in limiter.admit(scopes, 10, min_call_seconds=0.1)]
    finally:
        deadlines.reset(token)
    assert isinstance(steps[0], Waiting)
    assert 0.5 < steps[0].expected_wait_seconds <= 1.6
    assert isinstance(steps[-1], Reservation)


async def test_caller_whose_deadline_cannot_be_met_gets_resource_exhausted_with_retry_after(redis: Redis) -> None:
    limiter = Limiter(redis, prefix=prefix(), window_seconds=30)
    scopes = [Scope("model:p/m", ScopeLimits(rpm=1))]
    await limiter.reserve(scopes, 10)
    token = deadlines.bind(2.0)
    try:
        with pytest.raises(CapacityRefused) as refused:
            await limiter.reserve(scopes, 10, min_call_seconds=0.5)
    finally:
        deadlines.reset(token)
    assert refused.value.retry_after_seconds is not None
    assert 25 < refused.value.retry_after_seconds <= 30.1


async def test_request_larger_than_the_tpm_limit_is_refused_at_once(redis: Redis) -> None:
    limiter = Limiter(redis, prefix=prefix())
    with pytest.raises(CapacityRefused, match="never fit"):
        await limiter.reserve([Scope("model:p/m", ScopeLimits(tpm=100))], 101)


async def test_full_wait_queue_refuses_instead_of_growing(redis: Redis) -> None:
    limiter = Limiter(redis, prefix=prefix(), window_seconds=5, max_waiters=1)
    scopes = [Scope("model:p/m", ScopeLimits(rpm=1))]
    await limiter.reserve(scopes, 1)
    waiting = asyncio.create_task(limiter.reserve(scopes, 1))
    await asyncio.sleep(0.2)
    with pytest.raises(CapacityRefused, match="queue is full"):
        await limiter.reserve(scopes, 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert limiter.waiters == 0


async def test_batch_borrows_the_interactive_reserve_only_while_no_interactive_traffic_is_about(
    redis: Redis,
) -> None:
    limiter = Limiter(redis, prefix=prefix(), window_seconds=30)
    scopes = [Scope("model:p/m", ScopeLimits(tpm=100), reserve=0.2)]
    for _ in range(10):  # nobody interactive: batch may use the whole limit
        assert (await limiter.try_reserve(scopes, 10, batch=True))[0] is not None
    assert (await limiter.try_reserve(scopes, 10, batch=True))[0] is None

    limiter = Limiter(redis, prefix=prefix(), window_seconds=30)
    assert (await limiter.try_reserve(scopes, 10))[0] is not None  # interactive demand: batch keeps off 20%
    for _ in range(7):
        assert (await limiter.try_reserve(scopes, 10, batch=True))[0] is not None
    assert (await limiter.try_reserve(scopes, 10, batch=True))[0] is None
    assert (await limiter.try_reserve(scopes, 10))[0] is not None
    assert (await limiter.try_reserve(scopes, 10))[0] is not None
    assert (await limiter.try_reserve(scopes, 10))[0] is None


async def test_batch_admissions_are_paced_over_the_window_not_burst_at_its_start(redis: Redis) -> None:
    limiter = Limiter(redis, prefix=prefix(), window_seconds=6)
    scopes = [Scope("model:p/m", ScopeLimits(rpm=60))]  # one batch admission per 100 ms
    reservations = await asyncio.gather(*(limiter.reserve(scopes, 1, interactive=False) for _ in range(10)))
    admitted = sorted(r.admitted_at_ms for r in reservations)
    assert admitted[-1] - admitted[0] >= 750  # ten admissions: one interval of slack, then 100 ms apart


async def test_queued_batch_callers_are_admitted_round_robin_across_tenants(redis: Redis) -> None:
    """Tenant a queues all its requests before b, c and d arrive; each still gets a quarter of every stretch."""
    limiter = Limiter(redis, prefix=prefix(), window_seconds=1.0, max_waiters=1000)
    scopes = [Scope("model:p/m", ScopeLimits(rpm=40))]  # batch paced at one admission per 25 ms
    order: list[str] = []

    async def ask(tenant: str) -> None:
        reservation = await limiter.reserve(scopes, 1, interactive=False, tenant=tenant, cooldown="p/m")
        order.append(tenant)
        await reservation.settle(1)

    token = deadlines.bind(30.0)
    try:
        tasks = [asyncio.create_task(ask("a")) for _ in range(20)]
        await asyncio.sleep(0.1)  # a's requests are queued before anyone else's
        for tenant in "bcd":
            tasks += [asyncio.create_task(ask(tenant)) for _ in range(20)]
        await asyncio.gather(*tasks)
    finally:
        deadlines.reset(token)
    assert len(order) == 80
    # From the first admission after the others arrived, the tenants take turns, a's backlog notwithstanding.
    start = order.index("b")
    turns = order[start : start + 40]
    counts = {t: turns.count(t) for t in "abcd"}
    assert all(9 <= n <= 11 for n in counts.values()), counts
    jain = sum(counts.values()) ** 2 / (4 * sum(v * v for v in counts.values()))
    assert jain >= 0.95, counts
    assert limiter.waiters == 0


async def test_a_tenant_at_its_own_limit_does_not_hold_up_the_others(redis: Redis) -> None:
    limiter = Limiter(redis, prefix=prefix(), window_seconds=10)
    model = Scope("model:p/m", ScopeLimits(max_concurrency=100))

    def scopes(tenant: str) -> list[Scope]:
        return [model, Scope(f"tenant:{tenant}", ScopeLimits(rpm=1))]

    await limiter.reserve(scopes("a"), 1, tenant="a", cooldown="p/m")
    token = deadlines.bind(20.0)
    try:
        stuck = asyncio.create_task(limiter.reserve(scopes("a"), 1, tenant="a", cooldown="p/m"))
        await asyncio.sleep(0.1)
        assert limiter.waiters == 1
        # b arrives behind a's waiter in the same lane and is admitted while a's waits out its window
        other = await asyncio.wait_for(limiter.reserve(scopes("b"), 1, tenant="b", cooldown="p/m"), 2)
        assert other is not None
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
    finally:
        deadlines.reset(token)
    assert limiter.waiters == 0


async def test_cooldown_holds_every_limiter_sharing_the_prefix(redis: Redis, redis_url: str) -> None:
    key_prefix = prefix()
    other_client = Redis.from_url(redis_url)
    try:
        first, second = Limiter(redis, prefix=key_prefix), Limiter(other_client, prefix=key_prefix)
        await first.set_cooldown("p/m", 3)
        reservation, wait, blocked = await second.try_reserve([Scope("model:p/m", ScopeLimits())], 1, cooldown="p/m")
        assert reservation is None
        assert blocked == "cooldown"
        assert 2 < wait <= 3
    finally:
        await other_client.aclose()
