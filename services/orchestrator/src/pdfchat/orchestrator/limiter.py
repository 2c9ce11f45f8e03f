"""Distributed rate limiting in Redis: RPM, TPM and concurrency at global, provider-model and tenant scope.

Every replica asks the same Redis, and every decision is one Lua script run against Redis server time
(`TIME`), so N replicas share one limit instead of multiplying it, and two callers can never both take
the last slot (the TPM overshoot under concurrency that per-process counters show).

Semantics, per scope:

- RPM and TPM are a sliding 60-second window (what providers enforce): a sorted set of admitted
  reservations by admission time, their tokens in a hash, and a running sum. A request is admitted when
  one more request and its estimated tokens fit in every scope's window.
- Concurrency is a set of leases that expire (`lease_seconds`), so a replica that dies mid-call gives
  its slots back by itself.
- `reserve()` takes the *estimated* tokens (prompt + max output); `Reservation.settle()` replaces them
  with the actual usage and releases the concurrency lease. Callers settle in `finally`, so streams,
  errors and cancelled calls settle too; the settle is shielded from a second cancellation.
- A provider-model cooldown key (set on 429 by `retry`, or when headers say nothing remains) makes every
  replica wait out the provider's Retry-After instead of sending more requests into it.

Priority: batch traffic sees each provider-model's and the global limits reduced by `interactive_reserve`,
so interactive requests always find that share free; in the local wait queue interactive waiters go first.

When a reservation is refused, the script says how long until enough of the window expires. The caller
waits (in a bounded per-process queue) when that wait and the shortest plausible call still fit in its
gRPC deadline, and otherwise gets RESOURCE_EXHAUSTED with the wait as retry information.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from pdfchat.common import deadlines
from pdfchat.common.errors import ResourceExhausted
from pdfchat.orchestrator.config import ScopeLimits

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
_KEYS_PER_SCOPE = 4

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rid = ARGV[1]
local tokens = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local nscopes = (#KEYS - 1) / 4
local wait = 0
local blocker = ''
local never = 0
local cool = redis.call('PTTL', KEYS[#KEYS])
if cool > 0 then wait = cool; blocker = 'cooldown' end
for i = 0, nscopes - 1 do
  local w, th, s, c = KEYS[i*4+1], KEYS[i*4+2], KEYS[i*4+3], KEYS[i*4+4]
  local rpm = tonumber(ARGV[5 + i*3])
  local tpm = tonumber(ARGV[6 + i*3])
  local conc = tonumber(ARGV[7 + i*3])
  local old = redis.call('ZRANGEBYSCORE', w, '-inf', now - window)
  if #old > 0 then
    local freed = 0
    local vals = redis.call('HMGET', th, unpack(old))
    for j = 1, #old do freed = freed + (tonumber(vals[j]) or 0) end
    redis.call('ZREMRANGEBYSCORE', w, '-inf', now - window)
    redis.call('HDEL', th, unpack(old))
    redis.call('DECRBY', s, freed)
  end
  redis.call('ZREMRANGEBYSCORE', c, '-inf', now)
  if rpm > 0 then
    local n = redis.call('ZCARD', w)
    if n + 1 > rpm then
      local e = redis.call('ZRANGE', w, n - rpm, n - rpm, 'WITHSCORES')
      local ww = tonumber(e[2]) + window - now + 1
      if ww > wait then wait = ww; blocker = 'rpm:' .. i end
    end
  end
  if tpm > 0 then
    if tokens > tpm then
      never = 1; blocker = 'tpm:' .. i
    else
      local used = tonumber(redis.call('GET', s) or '0')
      if used + tokens > tpm then
        local entries = redis.call('ZRANGE', w, 0, -1, 'WITHSCORES')
        local excess = used + tokens - tpm
        local ww = window
        local ids = {}
        for j = 1, #entries, 2 do ids[#ids + 1] = entries[j] end
        local vals = {}
        if #ids > 0 then vals = redis.call('HMGET', th, unpack(ids)) end
        for j = 1, #ids do
          excess = excess - (tonumber(vals[j]) or 0)
          if excess <= 0 then ww = tonumber(entries[j*2]) + window - now + 1; break end
        end
        if ww > wait then wait = ww; blocker = 'tpm:' .. i end
      end
    end
  end
  if conc > 0 and redis.call('ZCARD', c) + 1 > conc then
    if wait == 0 then blocker = 'concurrency:' .. i end
    wait = math.max(wait, 1)
  end
end
if never == 1 then return {0, -1, blocker, now} end
if wait > 0 then return {0, wait, blocker, now} end
for i = 0, nscopes - 1 do
  local w, th, s, c = KEYS[i*4+1], KEYS[i*4+2], KEYS[i*4+3], KEYS[i*4+4]
  redis.call('ZADD', w, now, rid)
  redis.call('HSET', th, rid, tokens)
  redis.call('INCRBY', s, tokens)
  redis.call('ZADD', c, now + lease, rid)
  local ttl = window + lease + 1000
  redis.call('PEXPIRE', w, ttl); redis.call('PEXPIRE', th, ttl)
  redis.call('PEXPIRE', s, ttl); redis.call('PEXPIRE', c, ttl)
end
return {1, 0, '', now}
"""

_SETTLE = """
local rid = ARGV[1]
local actual = tonumber(ARGV[2])
local cancel = ARGV[3] == '1'
for i = 0, #KEYS / 4 - 1 do
  local w, th, s, c = KEYS[i*4+1], KEYS[i*4+2], KEYS[i*4+3], KEYS[i*4+4]
  redis.call('ZREM', c, rid)
  local old = redis.call('HGET', th, rid)
  if old then
    if cancel then
      redis.call('ZREM', w, rid); redis.call('HDEL', th, rid)
      redis.call('DECRBY', s, tonumber(old))
    else
      redis.call('HSET', th, rid, actual)
      redis.call('INCRBY', s, actual - tonumber(old))
    end
  end
end
return 1
"""

_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local n = redis.call('ZCOUNT', KEYS[1], now - window, '+inf')
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
local stale = 0
if #old > 0 then
  local vals = redis.call('HMGET', KEYS[2], unpack(old))
  for j = 1, #old do stale = stale + (tonumber(vals[j]) or 0) end
end
local used = tonumber(redis.call('GET', KEYS[3]) or '0') - stale
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
return {n, used, redis.call('ZCARD', KEYS[4])}
"""


@dataclass(frozen=True)
class Scope:
    """One limited scope: `key` names it in Redis (`global`, `model:<provider>/<model>`, `tenant:<id>`)."""

    key: str
    limits: ScopeLimits


@dataclass(frozen=True)
class Waiting:
    """The caller is queued; capacity is expected in `expected_wait_seconds`."""

    expected_wait_seconds: float
    blocked_by: str


@dataclass(frozen=True)
class WindowUsage:
    requests: int
    tokens: int
    in_flight: int


class CapacityRefused(ResourceExhausted):
    """No capacity in time for the caller's deadline (or ever, for a request larger than a TPM limit)."""

    def __init__(self, message: str, retry_after_seconds: float | None, blocked_by: str) -> None:
        super().__init__(message, retry_after_seconds)
        self.blocked_by = blocked_by


class Reservation:
    """Capacity held for one call: settle it exactly once (later calls are no-ops)."""

    def __init__(self, limiter: Limiter, rid: str, keys: list[str], tokens: int, admitted_at_ms: int) -> None:
        self._limiter = limiter
        self.rid = rid
        self.keys = keys
        self.tokens = tokens
        self.admitted_at_ms = admitted_at_ms
        self.settled = False

    async def settle(self, actual_tokens: int | None = None, *, cancel: bool = False) -> None:
        """Replaces the estimate by `actual_tokens` (the estimate when None) and frees the concurrency lease.

        `cancel` withdraws the reservation entirely, for a call that never reached the provider. Shielded:
        a caller cancelled while settling still settles.
        """
        if self.settled:
            return
        self.settled = True
        actual = self.tokens if actual_tokens is None else max(actual_tokens, 0)
        await asyncio.shield(self._limiter._settle(self, actual, cancel))


class Limiter:
    """Reserve-then-settle admission against Redis, shared by every replica using the same key `prefix`."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "pdfchat:orch",
        window_seconds: float = WINDOW_SECONDS,
        lease_seconds: float = 300.0,
        max_waiters: int = 1000,
        poll_seconds: float = 0.05,
        max_wait_seconds: float = 600.0,
    ) -> None:
        self._redis = redis
        self.prefix = prefix
        self.window_seconds = window_seconds
        self._lease_ms = round(lease_seconds * 1000)
        self._max_waiters = max_waiters
        self._poll = poll_seconds
        self._max_wait = max_wait_seconds
        self._reserve = redis.register_script(_RESERVE)
        self._settle_script = redis.register_script(_SETTLE)
        self._window = redis.register_script(_WINDOW)
        self._waiters = 0
        self._interactive_waiters = 0
        self._counter = itertools.count()

    @property
    def waiters(self) -> int:
        return self._waiters

    def cooldown_key(self, model_key: str) -> str:
        return f"{self.prefix}:cooldown:{model_key}"

    def _scope_keys(self, scope: str) -> list[str]:
        base = f"{self.prefix}:lim:{scope}"
        return [f"{base}:w", f"{base}:t", f"{base}:s", f"{base}:c"]

    async def try_reserve(
        self, scopes: Sequence[Scope], tokens: int, *, cooldown: str | None = None
    ) -> tuple[Reservation | None, float, str]:
        """One atomic decision. Returns (reservation, 0, "") or (None, wait seconds, blocking scope).

        The wait is `math.inf` when the request can never fit (more tokens than a TPM limit).
        """
        rid = f"{uuid.uuid4().hex[:16]}{next(self._counter)}"
        keys = [k for scope in scopes for k in self._scope_keys(scope.key)]
        argv: list[Any] = [rid, tokens, round(self.window_seconds * 1000), self._lease_ms]
        for scope in scopes:
            argv += [scope.limits.rpm or 0, scope.limits.tpm or 0, scope.limits.max_concurrency or 0]
        cooldown_key = self.cooldown_key(cooldown) if cooldown else f"{self.prefix}:cooldown:-"
        granted, wait_ms, blocker, now_ms = await self._reserve(keys=[*keys, cooldown_key], args=argv)
        blocked_by = blocker.decode() if isinstance(blocker, bytes) else str(blocker)
        if int(granted) == 1:
            return Reservation(self, rid, keys, tokens, int(now_ms)), 0.0, ""
        if int(wait_ms) < 0:
            return None, math.inf, self._describe(blocked_by, scopes)
        return None, int(wait_ms) / 1000, self._describe(blocked_by, scopes)

    @staticmethod
    def _describe(blocker: str, scopes: Sequence[Scope]) -> str:
        kind, _, index = blocker.partition(":")
        if index.isdigit() and int(index) < len(scopes):
            return f"{kind} of {scopes[int(index)].key}"
        return kind

    async def admit(
        self,
        scopes: Sequence[Scope] | Callable[[], Awaitable[Sequence[Scope]]],
        tokens: int,
        *,
        interactive: bool = True,
        cooldown: str | None = None,
        min_call_seconds: float = 0.5,
    ) -> AsyncIterator[Waiting | Reservation]:
        """Reserves capacity, waiting for it when the caller's deadline allows.

        `scopes` may be a function giving the scopes: it is asked again before every attempt, so a caller
        that waits sees limits learned meanwhile (see `learned`). Yields `Waiting` once when the caller has
        to wait (so a stream can say so), then the
        `Reservation`. Raises CapacityRefused when the wait plus `min_call_seconds` (the shortest the call
        itself can take) would pass the deadline, the request can never fit, or the wait queue is full.
        """
        announced = False
        queued = False
        started = time.monotonic()
        try:
            while True:
                current = await scopes() if callable(scopes) else scopes
                reservation, wait, blocked_by = await self.try_reserve(current, tokens, cooldown=cooldown)
                if reservation is not None:
                    yield reservation
                    return
                if math.isinf(wait):
                    raise CapacityRefused(
                        f"a request of ~{tokens} tokens can never fit the {blocked_by} limit", None, blocked_by
                    )
                left = deadlines.remaining()
                waited = time.monotonic() - started
                budget = (
                    self._max_wait - waited if left is None else min(self._max_wait - waited, left - min_call_seconds)
                )
                if wait > budget:
                    raise CapacityRefused(
                        f"no capacity ({blocked_by}) for ~{wait:.1f} s, beyond the request's deadline",
                        wait,
                        blocked_by,
                    )
                if not queued:
                    if self._waiters >= self._max_waiters:
                        raise CapacityRefused(f"the wait queue is full ({blocked_by})", wait, blocked_by)
                    queued = True
                    self._waiters += 1
                    if interactive:
                        self._interactive_waiters += 1
                if not announced:
                    announced = True
                    yield Waiting(wait, blocked_by)
                # Interactive waiters go first: batch waiters give way while any interactive one waits here.
                pause = max(min(wait, 1.0), self._poll)
                if not interactive and self._interactive_waiters:
                    pause += self._poll
                await asyncio.sleep(pause)
        finally:
            if queued:
                self._waiters -= 1
                if interactive:
                    self._interactive_waiters -= 1

    async def reserve(
        self, scopes: Sequence[Scope] | Callable[[], Awaitable[Sequence[Scope]]], tokens: int, **options: Any
    ) -> Reservation:
        """`admit()` without the waiting notice: the reservation, or CapacityRefused."""
        async for step in self.admit(scopes, tokens, **options):
            if isinstance(step, Reservation):
                return step
        raise AssertionError("admit() ended without a reservation")  # pragma: no cover

    async def _settle(self, reservation: Reservation, actual: int, cancel: bool) -> None:
        try:
            await self._settle_script(keys=reservation.keys, args=[reservation.rid, actual, "1" if cancel else "0"])
        except Exception:
            # The lease expires by itself; log with context rather than fail the caller's request.
            log.exception("settling reservation %s failed; its lease expires on its own", reservation.rid)

    async def usage(self, scope: str) -> WindowUsage:
        """What the last window holds for `scope` (for learning limits from 429s, and for tests)."""
        keys = self._scope_keys(scope)
        n, used, in_flight = await self._window(keys=keys, args=[round(self.window_seconds * 1000)])
        return WindowUsage(int(n), int(used), int(in_flight))

    async def set_cooldown(self, model_key: str, seconds: float) -> None:
        """Makes every replica hold requests to `model_key` for `seconds` (never shortens a longer one)."""
        ms = max(1, round(seconds * 1000))
        key = self.cooldown_key(model_key)
        current = await self._redis.pttl(key)
        if current is None or int(current) < ms:
            await self._redis.set(key, "1", px=ms)

    async def cooldown_left(self, model_key: str) -> float:
        left = await self._redis.pttl(self.cooldown_key(model_key))
        return max(int(left or 0), 0) / 1000


def batch_limits(limits: ScopeLimits, reserve: float) -> ScopeLimits:
    """The share of `limits` batch traffic may use: interactive keeps `reserve` of each limit."""

    def share(value: int | None) -> int | None:
        return None if value is None else max(1, math.floor(value * (1 - reserve)))

    return ScopeLimits(rpm=share(limits.rpm), tpm=share(limits.tpm), max_concurrency=share(limits.max_concurrency))
