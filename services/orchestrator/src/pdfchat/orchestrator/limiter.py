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
import contextlib
import contextvars
import itertools
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from pdfchat.common import deadlines
from pdfchat.common.errors import ResourceExhausted
from pdfchat.orchestrator._wait_queue import FairWaitQueue
from pdfchat.orchestrator.config import ScopeLimits

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rid = ARGV[1]
local tokens = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local batch = ARGV[5] == '1'
local nscopes = (#KEYS - 1) / 6
local wait = 0
local blocker = ''
local never = 0
local rpms = {}
local cool = redis.call('PTTL', KEYS[#KEYS])
if cool > 0 then wait = cool; blocker = 'cooldown' end
for i = 0, nscopes - 1 do
  local w, th, s, c, p, demand = KEYS[i*6+1], KEYS[i*6+2], KEYS[i*6+3], KEYS[i*6+4], KEYS[i*6+5], KEYS[i*6+6]
  local rpm = tonumber(ARGV[6 + i*4])
  local tpm = tonumber(ARGV[7 + i*4])
  local conc = tonumber(ARGV[8 + i*4])
  local reserve = tonumber(ARGV[9 + i*4])
  if reserve > 0 then
    if not batch then
      redis.call('SET', demand, '1', 'PX', window)
    elseif redis.call('EXISTS', demand) == 1 then
      -- interactive traffic was seen in the last window: batch keeps off its share
      if rpm > 0 then rpm = math.max(1, math.floor(rpm * (1 - reserve))) end
      if tpm > 0 then tpm = math.max(1, math.floor(tpm * (1 - reserve))) end
      if conc > 0 then conc = math.max(1, math.floor(conc * (1 - reserve))) end
    end
  end
  rpms[i] = rpm
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
    if batch then
      -- paced: one batch admission per window/rpm (one interval of slack), so the window fills evenly
      local tat = tonumber(redis.call('GET', p) or '0')
      local ww = tat - window / rpm - now
      if ww > wait then wait = ww; blocker = 'pace:' .. i end
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
if wait > 0 then return {0, math.ceil(wait), blocker, now} end
for i = 0, nscopes - 1 do
  local w, th, s, c, p = KEYS[i*6+1], KEYS[i*6+2], KEYS[i*6+3], KEYS[i*6+4], KEYS[i*6+5]
  redis.call('ZADD', w, now, rid)
  redis.call('HSET', th, rid, tokens)
  redis.call('INCRBY', s, tokens)
  redis.call('ZADD', c, now + lease, rid)
  local ttl = window + lease + 1000
  redis.call('PEXPIRE', w, ttl); redis.call('PEXPIRE', th, ttl)
  redis.call('PEXPIRE', s, ttl); redis.call('PEXPIRE', c, ttl)
  if rpms[i] > 0 then
    -- every admission (interactive too) moves the pace on, so batch fills only what is left
    local tat = math.max(tonumber(redis.call('GET', p) or '0'), now) + window / rpms[i]
    redis.call('SET', p, tostring(tat), 'PX', window + 1000)
  end
end
return {1, 0, '', now}
"""

_SETTLE = """
local rid = ARGV[1]
local actual = tonumber(ARGV[2])
local cancel = ARGV[3] == '1'
local answered_age = tonumber(ARGV[4])
local answered_at = -1
if answered_age >= 0 then
  local t = redis.call('TIME')
  answered_at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - answered_age
end
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
      -- the provider counted the call when it got it, after we reserved: keep it in the window from
      -- its first answer on, so our window never frees a slot before the provider's does
      if answered_at >= 0 then redis.call('ZADD', w, 'XX', 'GT', answered_at, rid) end
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
    """One limited scope: `key` names it in Redis (`global`, `model:<provider>/<model>`, `tenant:<id>`).

    `reserve` is the share of each limit kept for interactive traffic: batch requests may use it only
    while no interactive request has asked this scope for capacity in the last window.
    """

    key: str
    limits: ScopeLimits
    reserve: float = 0.0


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


@dataclass(frozen=True)
class _Decision:
    reservation: Reservation | None
    wait: float
    """Seconds until a retry can succeed; `math.inf` when it never can."""
    blocked_by: str
    scope: str | None
    """The key of the blocking scope (None for a cooldown)."""


ScopeSource = Sequence[Scope] | Callable[[], Awaitable[Sequence[Scope]]]


class Reservation:
    """Capacity held for one call: settle it exactly once (later calls are no-ops)."""

    def __init__(
        self, limiter: Limiter, rid: str, keys: list[str], tokens: int, admitted_at_ms: int, lane: str | None = None
    ) -> None:
        self._limiter = limiter
        self.rid = rid
        self.keys = keys
        self.tokens = tokens
        self.admitted_at_ms = admitted_at_ms
        self.lane = lane
        self.settled = False
        self._answered_at: float | None = None

    def answered(self) -> None:
        """The provider has answered (first event): it counted the call by now, so our window keeps the
        call from here on (see `_SETTLE`) instead of from our earlier reservation."""
        if self._answered_at is None:
            self._answered_at = time.monotonic()

    async def settle(self, actual_tokens: int | None = None, *, cancel: bool = False) -> None:
        """Replaces the estimate by `actual_tokens` (the estimate when None) and frees the concurrency lease.

        `cancel` withdraws the reservation entirely, for a call that never reached the provider. Shielded:
        a caller cancelled while settling still settles.
        """
        if self.settled:
            return
        self.settled = True
        actual = self.tokens if actual_tokens is None else max(actual_tokens, 0)
        age_ms = -1 if self._answered_at is None else round((time.monotonic() - self._answered_at) * 1000)
        await asyncio.shield(self._limiter._settle(self, actual, cancel, age_ms))


@dataclass(eq=False)
class _Waiter:
    tenant: str
    interactive: bool
    scopes: ScopeSource
    tokens: int
    give_up_at: float
    """Monotonic time past which capacity comes too late for the caller's deadline."""
    granted: asyncio.Future[Reservation]


@dataclass(eq=False)
class _Lane:
    """One model's local wait queue, served by one dispatcher task while it has waiters."""

    queue: FairWaitQueue[_Waiter] = field(default_factory=FairWaitQueue)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dispatcher: asyncio.Task[None] | None = None
    grant_interval: float = 0.0
    """EWMA of the seconds between two admissions from the queue (for the expected wait)."""
    last_grant: float | None = None


class Limiter:
    """Reserve-then-settle admission against Redis, shared by every replica using the same key `prefix`.

    Waiting callers do not poll Redis each: they queue in this replica's `_Lane` for their model (fair
    across tenants, see `_wait_queue`), and one dispatcher task per lane asks Redis for the caller whose
    turn it is, sleeping until the script's wait has passed or a local settle frees capacity (a settle in
    another replica is noticed within `MAX_DISPATCH_SLEEP`).
    """

    MAX_DISPATCH_SLEEP = 0.25

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "pdfchat:orch",
        window_seconds: float = WINDOW_SECONDS,
        lease_seconds: float = 300.0,
        max_waiters: int = 1000,
        poll_seconds: float = 0.01,
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
        self._lanes: dict[str, _Lane] = {}
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
        self, scopes: Sequence[Scope], tokens: int, *, cooldown: str | None = None, batch: bool = False
    ) -> tuple[Reservation | None, float, str]:
        """One atomic decision. Returns (reservation, 0, "") or (None, wait seconds, blocking scope).

        The wait is `math.inf` when the request can never fit (more tokens than a TPM limit).
        """
        decision = await self._decide(scopes, tokens, cooldown=cooldown, batch=batch)
        return decision.reservation, decision.wait, decision.blocked_by

    async def _decide(
        self, scopes: Sequence[Scope], tokens: int, *, cooldown: str | None, batch: bool, lane: str | None = None
    ) -> _Decision:
        rid = f"{uuid.uuid4().hex[:16]}{next(self._counter)}"
        keys: list[str] = []
        call_keys: list[str] = []
        argv: list[Any] = [rid, tokens, round(self.window_seconds * 1000), self._lease_ms, "1" if batch else "0"]
        for scope in scopes:
            scope_keys = self._scope_keys(scope.key)
            base = f"{self.prefix}:lim:{scope.key}"
            keys += scope_keys
            call_keys += [*scope_keys, f"{base}:pace", f"{base}:interactive"]
            limits = scope.limits
            argv += [limits.rpm or 0, limits.tpm or 0, limits.max_concurrency or 0, repr(float(scope.reserve))]
        cooldown_key = self.cooldown_key(cooldown) if cooldown else f"{self.prefix}:cooldown:-"
        granted, wait_ms, blocker, now_ms = await self._reserve(keys=[*call_keys, cooldown_key], args=argv)
        raw = blocker.decode() if isinstance(blocker, bytes) else str(blocker)
        if int(granted) == 1:
            return _Decision(Reservation(self, rid, keys, tokens, int(now_ms), lane), 0.0, "", None)
        kind, _, index = raw.partition(":")
        scope_key = scopes[int(index)].key if index.isdigit() and int(index) < len(scopes) else None
        described = f"{kind} of {scope_key}" if scope_key is not None else kind
        wait = math.inf if int(wait_ms) < 0 else int(wait_ms) / 1000
        return _Decision(None, wait, described, scope_key)

    async def admit(
        self,
        scopes: ScopeSource,
        tokens: int,
        *,
        interactive: bool = True,
        tenant: str = "",
        cooldown: str | None = None,
        min_call_seconds: float = 0.5,
    ) -> AsyncIterator[Waiting | Reservation]:
        """Reserves capacity, waiting for it in this replica's fair queue when the caller's deadline allows.

        `scopes` may be a function giving the scopes: it is asked again before every attempt, so a caller
        that waits sees limits learned meanwhile (see `learned`). A caller tries at once only when nobody
        of its class (or, for batch, nobody at all) waits for the same model (`cooldown` names the model);
        otherwise it joins the queue, where its `tenant` takes turns with the other tenants. Yields
        `Waiting` once when the caller has to wait (so a stream can say so), then the `Reservation`.

        Raises CapacityRefused when the known wait plus `min_call_seconds` (the shortest the call itself
        can take) would pass the deadline, when the deadline passes while queued, when the request can
        never fit, or when the wait queue is full.
        """
        lane_key = cooldown or "-"
        left = deadlines.remaining()
        budget = self._max_wait if left is None else min(self._max_wait, left - min_call_seconds)
        started = time.monotonic()
        lane = self._lanes.get(lane_key)
        ahead = 0 if lane is None else len(lane.queue) if not interactive else lane.queue.waiting(interactive=True)
        expected = 0.0
        blocked_by = "queue"
        if ahead == 0:
            current = await scopes() if callable(scopes) else scopes
            decision = await self._decide(current, tokens, cooldown=cooldown, batch=not interactive, lane=lane_key)
            if decision.reservation is not None:
                yield decision.reservation
                return
            blocked_by = decision.blocked_by
            if math.isinf(decision.wait):
                raise CapacityRefused(
                    f"a request of ~{tokens} tokens can never fit the {blocked_by} limit", None, blocked_by
                )
            if decision.wait > budget:
                raise CapacityRefused(
                    f"no capacity ({blocked_by}) for ~{decision.wait:.1f} s, beyond the request's deadline",
                    decision.wait,
                    blocked_by,
                )
            expected = decision.wait
        elif lane is not None:
            expected = ahead * lane.grant_interval
        if self._waiters >= self._max_waiters:
            raise CapacityRefused(f"the wait queue is full ({blocked_by})", expected or None, blocked_by)
        waiter = _Waiter(
            tenant, interactive, scopes, tokens, started + budget, asyncio.get_running_loop().create_future()
        )
        lane = self._enqueue(lane_key, cooldown, waiter)
        self._waiters += 1
        try:
            yield Waiting(expected, blocked_by)
            await asyncio.wait((waiter.granted,), timeout=max(budget - (time.monotonic() - started), 0.0))
        except BaseException:
            await self._withdraw(lane, waiter)
            raise
        finally:
            self._waiters -= 1
        if not waiter.granted.done():
            await self._withdraw(lane, waiter)
            raise CapacityRefused(
                f"no capacity within the request's deadline after {time.monotonic() - started:.1f} s in the queue",
                lane.grant_interval * max(len(lane.queue), 1) or None,
                "queue",
            )
        yield waiter.granted.result()  # raises what the dispatcher refused it with

    def _enqueue(self, lane_key: str, cooldown: str | None, waiter: _Waiter) -> _Lane:
        lane = self._lanes.get(lane_key)
        if lane is None:
            lane = self._lanes[lane_key] = _Lane()
        lane.queue.push(waiter, waiter.tenant, interactive=waiter.interactive)
        lane.wake.set()
        if lane.dispatcher is None:
            # An empty context: the dispatcher serves every caller, it must not log as the first one.
            lane.dispatcher = asyncio.create_task(
                self._dispatch(lane_key, lane, cooldown), context=contextvars.Context()
            )
        return lane

    async def _withdraw(self, lane: _Lane, waiter: _Waiter) -> None:
        """A waiter leaves (cancelled, or its deadline passed): out of the queue, and any capacity it was
        granted meanwhile goes back."""
        lane.queue.remove(waiter)
        if not waiter.granted.done():
            waiter.granted.cancel()
        elif not waiter.granted.cancelled() and waiter.granted.exception() is None:
            await waiter.granted.result().settle(cancel=True)

    async def _dispatch(self, lane_key: str, lane: _Lane, cooldown: str | None) -> None:
        """Admits the lane's waiters in turn while it has any; one Redis decision per attempt."""
        try:
            while len(lane.queue):
                lane.wake.clear()
                retry_in = await self._serve_one(lane_key, lane, cooldown)
                if retry_in is None:
                    continue
                sleep = max(min(retry_in, self.MAX_DISPATCH_SLEEP), self._poll)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.wake.wait(), timeout=sleep)
        finally:
            lane.dispatcher = None
            if not len(lane.queue) and self._lanes.get(lane_key) is lane:
                del self._lanes[lane_key]

    async def _serve_one(self, lane_key: str, lane: _Lane, cooldown: str | None) -> float | None:
        """Tries the waiters whose turn it is; None when the queue changed, else seconds until a retry."""
        now = time.monotonic()
        retry_in: float | None = None
        for waiter in lane.queue.candidates(now):
            if waiter.granted.done():  # gave up while queued
                lane.queue.remove(waiter)
                return None
            try:
                current = await waiter.scopes() if callable(waiter.scopes) else waiter.scopes
                decision = await self._decide(
                    current, waiter.tokens, cooldown=cooldown, batch=not waiter.interactive, lane=lane_key
                )
            except Exception as exc:
                log.exception("limiter decision failed for a queued caller of %s", lane_key)
                if not waiter.granted.done():
                    waiter.granted.set_exception(exc)
                lane.queue.remove(waiter)
                return None
            if waiter.granted.done():  # gave up during the decision
                lane.queue.remove(waiter)
                if decision.reservation is not None:
                    await decision.reservation.settle(cancel=True)
                return None
            if decision.reservation is not None:
                waiter.granted.set_result(decision.reservation)
                lane.queue.served(waiter)
                done = time.monotonic()
                if lane.last_grant is not None:
                    lane.grant_interval = 0.8 * lane.grant_interval + 0.2 * (done - lane.last_grant)
                lane.last_grant = done
                return None
            if math.isinf(decision.wait):
                waiter.granted.set_exception(
                    CapacityRefused(
                        f"a request of ~{waiter.tokens} tokens can never fit the {decision.blocked_by} limit",
                        None,
                        decision.blocked_by,
                    )
                )
                lane.queue.remove(waiter)
                return None
            if decision.scope is not None and decision.scope.startswith("tenant:"):
                # Only this tenant is out of capacity: its waiters step aside, the next tenant is tried.
                lane.queue.block(waiter.tenant, now + decision.wait, interactive=waiter.interactive)
                retry_in = decision.wait if retry_in is None else min(retry_in, decision.wait)
                continue
            # A limit every waiter of the lane shares: nobody else fits either, and whoever cannot wait
            # that long is told now rather than at its deadline.
            self._refuse_hopeless(lane, now + decision.wait, decision, batch_only=not waiter.interactive)
            return decision.wait
        unblock = lane.queue.next_unblock()
        if unblock is not None:
            retry_in = max(unblock - now, 0.0) if retry_in is None else min(retry_in, max(unblock - now, 0.0))
        return self.MAX_DISPATCH_SLEEP if retry_in is None else retry_in

    @staticmethod
    def _refuse_hopeless(lane: _Lane, free_at: float, decision: _Decision, *, batch_only: bool) -> None:
        """Refuses the waiters that cannot wait until `free_at` (batch ones only, when a batch waiter was
        refused: batch sees stricter limits and a pace interactive callers are not held by)."""
        for waiter in lane.queue.items():
            if batch_only and waiter.interactive:
                continue
            if waiter.give_up_at < free_at and not waiter.granted.done():
                waiter.granted.set_exception(
                    CapacityRefused(
                        f"no capacity ({decision.blocked_by}) for ~{decision.wait:.1f} s, past the request's deadline",
                        decision.wait,
                        decision.blocked_by,
                    )
                )
                lane.queue.remove(waiter)

    async def reserve(self, scopes: ScopeSource, tokens: int, **options: Any) -> Reservation:
        """`admit()` without the waiting notice: the reservation, or CapacityRefused."""
        async for step in self.admit(scopes, tokens, **options):
            if isinstance(step, Reservation):
                return step
        raise AssertionError("admit() ended without a reservation")  # pragma: no cover

    async def _settle(self, reservation: Reservation, actual: int, cancel: bool, answered_age_ms: int) -> None:
        try:
            await self._settle_script(
                keys=reservation.keys, args=[reservation.rid, actual, "1" if cancel else "0", answered_age_ms]
            )
        except Exception:
            # The lease expires by itself; log with context rather than fail the caller's request.
            log.exception("settling reservation %s failed; its lease expires on its own", reservation.rid)
        lane = self._lanes.get(reservation.lane) if reservation.lane is not None else None
        if lane is not None:
            lane.wake.set()  # a lease or unused tokens came back: the next waiter may fit now

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
