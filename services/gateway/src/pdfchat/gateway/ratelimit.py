"""Edge rate limit per tenant: a fixed window counter in Redis, shared by every gateway replica.

One INCR per request on `<prefix>:<tenant>:<window>`; the key expires with its window. A fixed window
lets a tenant burst up to twice the limit across a window boundary, which is acceptable at the edge (the
orchestrator enforces the expensive limits precisely). When Redis is unreachable the gateway admits the
request and logs it: an outage of the limiter must not take the API down.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class FixedWindowLimiter:
    def __init__(self, redis: Redis, limit: int, window_seconds: int = 60, prefix: str = "pdfchat:gw:rl") -> None:
        self._redis = redis
        self._limit = limit
        self._window = window_seconds
        self._prefix = prefix
        self._warned_at = 0.0

    async def admit(self, tenant: str, now: float | None = None) -> float | None:
        """None when the request may pass; otherwise the seconds until the tenant's window resets."""
        if self._limit <= 0:
            return None
        current = time.time() if now is None else now
        window = int(current // self._window)
        key = f"{self._prefix}:{tenant}:{window}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, self._window + 1)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            if current - self._warned_at > 30:
                self._warned_at = current
                log.warning("rate limiter unavailable, admitting requests: %r", exc)
            return None
        if int(count) <= self._limit:
            return None
        return (window + 1) * self._window - current
