"""A circuit breaker per provider-model, shared by every replica through Redis.

States (one Redis hash per provider-model, every transition one Lua script on Redis server time):

- closed: calls pass. `failure_threshold` consecutive failures (within `failure_window_seconds` of each
  other) open it.
- open: calls are refused for `open_seconds`, so a failing model costs nothing but a Redis round trip and
  the router goes straight to the next candidate.
- half-open: after `open_seconds` exactly one caller, on any replica, gets a probe lease
  (`probe_seconds`); the others are refused. The probe's success closes the breaker, its failure opens it
  again, and a probe that never reports (its replica died) lets another probe in when its lease ends.

Only failures that say something about the model's health count (5xx, timeouts, dropped streams):
a 429 is the provider's limit (the limiter and the cooldown handle it) and a 4xx is the request's fault.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

_ALLOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local open_ms = tonumber(ARGV[1])
local probe_ms = tonumber(ARGV[2])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return {1, 'closed', 0} end
if state == 'open' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
  if now < opened + open_ms then return {0, 'open', opened + open_ms - now} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + probe_ms)
  return {1, 'probe', 0}
end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now >= probe_until then
  redis.call('HSET', KEYS[1], 'probe_until', now + probe_ms)
  return {1, 'probe', 0}
end
return {0, 'half_open', probe_until - now}
"""

_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local success = ARGV[1] == '1'
local threshold = tonumber(ARGV[2])
local window_ms = tonumber(ARGV[3])
local ttl_ms = tonumber(ARGV[4])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if success then
  if state ~= 'open' then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
  end
  return 'closed'
end
if state == 'half_open' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'failures', 0)
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
  return 'open'
end
if state == 'open' then return 'open' end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_failure') or '0')
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if now - last > window_ms then failures = 0 end
failures = failures + 1
redis.call('HSET', KEYS[1], 'failures', failures, 'last_failure', now)
if failures >= threshold then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'failures', 0)
end
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return redis.call('HGET', KEYS[1], 'state')
"""


@dataclass(frozen=True)
class BreakerDecision:
    allowed: bool
    state: str
    """`closed`, `probe` (this caller is the half-open probe), `open` or `half_open` (a probe is out)."""
    retry_after_seconds: float = 0.0


class CircuitBreakers:
    """The breakers of every provider-model under one Redis key prefix."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        failure_threshold: int = 5,
        failure_window_seconds: float = 30.0,
        open_seconds: float = 15.0,
        probe_seconds: float = 30.0,
    ) -> None:
        self._prefix = prefix
        self._threshold = failure_threshold
        self._window_ms = round(failure_window_seconds * 1000)
        self._open_ms = round(open_seconds * 1000)
        self._probe_ms = round(probe_seconds * 1000)
        self._allow = redis.register_script(_ALLOW)
        self._record = redis.register_script(_RECORD)
        self._redis = redis

    def _key(self, model_key: str) -> str:
        return f"{self._prefix}:breaker:{model_key}"

    async def allow(self, model_key: str) -> BreakerDecision:
        """Whether a call to `model_key` may go out now (taking the probe lease when half-open)."""
        allowed, state, wait_ms = await self._allow(keys=[self._key(model_key)], args=[self._open_ms, self._probe_ms])
        text = state.decode() if isinstance(state, bytes) else str(state)
        return BreakerDecision(bool(int(allowed)), text, int(wait_ms) / 1000)

    async def record_success(self, model_key: str) -> None:
        await self._record(keys=[self._key(model_key)], args=["1", self._threshold, self._window_ms, self._ttl_ms])

    async def record_failure(self, model_key: str) -> str:
        """Counts a health failure; returns the state after it."""
        state = await self._record(
            keys=[self._key(model_key)], args=["0", self._threshold, self._window_ms, self._ttl_ms]
        )
        return state.decode() if isinstance(state, bytes) else str(state)

    async def state(self, model_key: str) -> str:
        value = await self._redis.hget(self._key(model_key), "state")
        if value is None:
            return CLOSED
        return value.decode() if isinstance(value, bytes) else str(value)

    @property
    def _ttl_ms(self) -> int:
        # Long enough to outlive any open period and probe; idle breakers disappear (closed) by themselves.
        return max(self._window_ms, self._open_ms + self._probe_ms) * 4
