from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from pdfchat.common.redis_client import create_redis
from pdfchat.gateway import auth
from pdfchat.gateway.app import create_app
from pdfchat.gateway.ratelimit import FixedWindowLimiter
from pdfchat.gateway.settings import GatewaySettings


@pytest.mark.integration
async def test_tenant_over_the_limit_is_told_when_its_window_resets(redis_url: str) -> None:
    redis = create_redis(redis_url)
    try:
        limiter = FixedWindowLimiter(redis, limit=3, window_seconds=60, prefix=f"test:{uuid.uuid4().hex}")
        now = 1_000_000 * 60 + 15.0
        assert [await limiter.admit("acme", now) for _ in range(3)] == [None, None, None]
        assert await limiter.admit("acme", now) == pytest.approx(45.0)
        assert await limiter.admit("globex", now) is None, "tenants have separate windows"
        assert await limiter.admit("acme", now + 60) is None, "a new window starts from zero"
    finally:
        await redis.aclose()


async def test_limiter_admits_requests_while_redis_is_down() -> None:
    redis = create_redis("redis://127.0.0.1:1/0")
    try:
        assert await FixedWindowLimiter(redis, limit=1).admit("acme") is None
    finally:
        await redis.aclose()


async def test_zero_limit_disables_the_limiter() -> None:
    redis = create_redis("redis://127.0.0.1:1/0")
    try:
        assert await FixedWindowLimiter(redis, limit=0).admit("acme") is None
    finally:
        await redis.aclose()


@pytest.mark.integration
def test_gateway_answers_429_with_retry_after_once_a_tenant_is_over_its_limit(
    redis_url: str, settings_factory: Callable[..., GatewaySettings]
) -> None:
    settings = settings_factory(rate_limit_per_minute=2, redis_url=redis_url)
    headers = {"Authorization": f"Bearer {auth.issue(settings, f't-{uuid.uuid4().hex}', 'alice')}"}
    with TestClient(create_app(settings)) as client:
        statuses = [client.get("/v1/usage", headers=headers) for _ in range(3)]
    # The orchestrator is down (503) for admitted requests; the third never gets that far.
    assert [response.status_code for response in statuses] == [503, 503, 429]
    assert statuses[-1].headers["content-type"] == "application/problem+json"
    assert 1 <= int(statuses[-1].headers["retry-after"]) <= 60
