"""When to try a failed LLM call again, and when to wait before it.

- Which failures: connection errors, 5xx, timeouts, 408, 409 and 429. Any other 4xx will fail the same
  way again, so it is never retried (the router may still fall over to another model).
- How long: full-jitter exponential backoff, `uniform(0, min(cap, base * 2**attempt))`, so replicas that
  failed together do not come back together; a Retry-After from the provider is a floor, never
  shortened. The 429's wait is also written as a cooldown shared by every replica (see `limiter`).
- Never hopeless: an attempt is made only when the wait plus the shortest plausible call still fit in the
  caller's remaining gRPC deadline.
- A retry budget per provider, shared through Redis: within any `budget_window_seconds`, retries may be at
  most `budget_ratio` of first attempts plus `budget_min_retries`. When a provider is down, retries would
  otherwise multiply the load on it by the attempt count at exactly the wrong moment.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from redis.asyncio import Redis

from pdfchat.common import deadlines
from pdfchat.orchestrator.generation import ProviderError, ProviderRejected

RETRYABLE_4XX = frozenset({408, 409, 429})

_BUDGET = """
local t = redis.call('TIME')
local now = tonumber(t[1])
local window = tonumber(ARGV[2])
local bucket = math.floor(now / window)
local kind = ARGV[1]
local req_now, req_prev = KEYS[1] .. ':req:' .. bucket, KEYS[1] .. ':req:' .. (bucket - 1)
local ret_now, ret_prev = KEYS[1] .. ':ret:' .. bucket, KEYS[1] .. ':ret:' .. (bucket - 1)
if kind == 'attempt' then
  redis.call('INCR', req_now); redis.call('EXPIRE', req_now, window * 3)
  return 1
end
local requests = tonumber(redis.call('GET', req_now) or '0') + tonumber(redis.call('GET', req_prev) or '0')
local retries = tonumber(redis.call('GET', ret_now) or '0') + tonumber(redis.call('GET', ret_prev) or '0')
if retries + 1 > tonumber(ARGV[3]) + tonumber(ARGV[4]) * requests then return 0 end
redis.call('INCR', ret_now); redis.call('EXPIRE', ret_now, window * 3)
return 1
"""


def is_retryable(error: ProviderError) -> bool:
    """Whether the same call might succeed if made again."""
    if isinstance(error, ProviderRejected):
        return error.status in RETRYABLE_4XX
    return error.status is None or error.status >= 500 or error.status in RETRYABLE_4XX


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    """Attempts per route, the first included."""
    base_seconds: float = 0.25
    cap_seconds: float = 8.0
    max_wait_seconds: float = 20.0
    """A longer required wait (a long Retry-After) moves on to the next route instead of waiting."""

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]; `attempt` 0 is the first retry."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2**attempt)
        return (rng or random).uniform(0, ceiling)

    def delay(self, attempt: int, retry_after_seconds: float | None, rng: random.Random | None = None) -> float:
        """The wait before retry number `attempt`: the backoff, never less than the provider's Retry-After."""
        jitter = self.backoff(attempt, rng)
        if retry_after_seconds is None:
            return jitter
        # Retry-After is a floor; a little jitter on top spreads the replicas that all got the same one.
        return retry_after_seconds + jitter * 0.1

    def next_delay(
        self, error: ProviderError, attempt: int, min_call_seconds: float, rng: random.Random | None = None
    ) -> float | None:
        """The wait before trying again after `error` on attempt `attempt` (0-based), or None: do not retry.

        None when the error is not retryable, the attempts are used up, the wait exceeds
        `max_wait_seconds`, or the wait plus `min_call_seconds` would not fit the caller's deadline.
        """
        if not is_retryable(error) or attempt + 1 >= self.max_attempts:
            return None
        wait = self.delay(attempt, error.retry_after_seconds, rng)
        if wait > self.max_wait_seconds:
            return None
        left = deadlines.remaining()
        if left is not None and wait + min_call_seconds > left:
            return None
        return wait


class RetryBudget:
    """Retries per provider capped at a ratio of first attempts over a sliding window, across replicas."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        ratio: float = 0.2,
        min_retries: int = 10,
        window_seconds: int = 10,
    ) -> None:
        self._prefix = prefix
        self._ratio = ratio
        self._min = min_retries
        self._window = max(1, int(window_seconds))
        self._script = redis.register_script(_BUDGET)

    def _key(self, provider: str) -> str:
        return f"{self._prefix}:retry-budget:{provider}"

    async def record_attempt(self, provider: str) -> None:
        """Counts a first attempt (retries are counted by `try_spend`)."""
        await self._script(keys=[self._key(provider)], args=["attempt", self._window, self._min, self._ratio])

    async def try_spend(self, provider: str) -> bool:
        """Takes one retry from the provider's budget; False when it is spent."""
        granted = await self._script(keys=[self._key(provider)], args=["retry", self._window, self._min, self._ratio])
        return bool(int(granted))
