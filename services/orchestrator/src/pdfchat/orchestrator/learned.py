"""Limits learned from the provider itself, for models whose RPM/TPM the configuration leaves out.

OpenAI-compatible providers describe their limits on every answer: `x-ratelimit-limit-requests` /
`-tokens` (the per-minute limits), `x-ratelimit-remaining-*` and `x-ratelimit-reset-*` (`6m0s`, `1.5s`,
`20ms`). The first answer from an endpoint teaches its limits; they go to a Redis hash so every replica
limits itself with them from then on. When an endpoint announces no limits but says nothing remains,
a cooldown until the reset holds every replica back. A 429 without limit headers teaches an RPM equal
to what our own limiter admitted in the last window (the provider refused the next one), never more
than before, once that window holds at least `MIN_SAMPLE` requests; a 429's Retry-After always
becomes a cooldown shared by every replica (see `router`).

Until an endpoint with no configured limits has answered once, `LearnedLimits.resolve()` lets only
`discovery_concurrency` calls in flight, so a burst's first wave cannot become a storm of 429s.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from pdfchat.orchestrator.config import ScopeLimits

log = logging.getLogger(__name__)

MIN_SAMPLE = 5
"""Requests in the window before a header-less 429 teaches an RPM."""
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float | None:
    """OpenAI's reset format (`1m30s`, `1.5s`, `20ms`, or a bare number of seconds) in seconds."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


@dataclass(frozen=True)
class RateLimitHeaders:
    """What one answer's `x-ratelimit-*` headers said; None where a header was missing."""

    limit_requests: int | None = None
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_seconds: float | None = None
    reset_tokens_seconds: float | None = None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimitHeaders:
        lowered = {k.lower(): v for k, v in headers.items()}

        def number(name: str) -> int | None:
            value = lowered.get(name)
            try:
                return None if value is None else int(float(value))
            except ValueError:
                return None

        def duration(name: str) -> float | None:
            value = lowered.get(name)
            return None if value is None else parse_duration(value)

        return cls(
            limit_requests=number("x-ratelimit-limit-requests"),
            limit_tokens=number("x-ratelimit-limit-tokens"),
            remaining_requests=number("x-ratelimit-remaining-requests"),
            remaining_tokens=number("x-ratelimit-remaining-tokens"),
            reset_requests_seconds=duration("x-ratelimit-reset-requests"),
            reset_tokens_seconds=duration("x-ratelimit-reset-tokens"),
        )

    @property
    def exhausted_for_seconds(self) -> float:
        """How long the provider says nothing is left (0 when something is)."""
        waits = [0.0]
        if self.remaining_requests == 0 and self.reset_requests_seconds:
            waits.append(self.reset_requests_seconds)
        if self.remaining_tokens == 0 and self.reset_tokens_seconds:
            waits.append(self.reset_tokens_seconds)
        return max(waits)


class LearnedLimits:
    """Learned per-model limits in Redis, read through a short local cache (limits change rarely)."""

    def __init__(
        self, redis: Redis, *, prefix: str, discovery_concurrency: int = 2, cache_seconds: float = 1.0
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self.discovery_concurrency = discovery_concurrency
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, dict[str, int]]] = {}

    def _key(self, model_key: str) -> str:
        return f"{self._prefix}:learned:{model_key}"

    async def _read(self, model_key: str) -> dict[str, int]:
        cached = self._cache.get(model_key)
        if cached is not None and time.monotonic() - cached[0] < self._cache_seconds:
            return cached[1]
        raw = await self._redis.hgetall(self._key(model_key))
        values = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        self._cache[model_key] = (time.monotonic(), values)
        return values

    async def resolve(self, model_key: str, configured: ScopeLimits) -> ScopeLimits:
        """The limits to enforce: configured ones win; learned ones fill the gaps; discovery before either."""
        if configured.rpm is not None and configured.tpm is not None:
            return configured
        learned = await self._read(model_key)
        if not learned.get("observed") and configured.rpm is None and configured.tpm is None:
            concurrency = configured.max_concurrency or self.discovery_concurrency
            return ScopeLimits(max_concurrency=min(concurrency, self.discovery_concurrency))
        return ScopeLimits(
            rpm=configured.rpm if configured.rpm is not None else learned.get("rpm"),
            tpm=configured.tpm if configured.tpm is not None else learned.get("tpm"),
            max_concurrency=configured.max_concurrency,
        )

    async def observe(self, model_key: str, headers: RateLimitHeaders) -> None:
        """Records the limits an answer announced (and that the endpoint has answered at all)."""
        update: dict[str, int] = {"observed": 1}
        if headers.limit_requests:
            update["rpm"] = headers.limit_requests
        if headers.limit_tokens:
            update["tpm"] = headers.limit_tokens
        known = await self._read(model_key)
        if all(known.get(k) == v for k, v in update.items()):
            return
        await self._redis.hset(self._key(model_key), mapping=cast("dict[Any, Any]", update))
        self._cache.pop(model_key, None)
        if "rpm" in update or "tpm" in update:
            log.info("learned limits of %s: rpm=%s tpm=%s", model_key, update.get("rpm"), update.get("tpm"))

    async def observe_rate_limited(self, model_key: str, admitted_in_window: int) -> None:
        """A 429 without limit headers: the provider's RPM is about what we sent in the last window.

        Only from a sample of at least `MIN_SAMPLE` requests: a 429 among the first few calls says little
        (a key shared with other clients, a momentary overload), and its Retry-After cooldown covers it.
        """
        if admitted_in_window < MIN_SAMPLE:
            return
        known = await self._read(model_key)
        rpm = admitted_in_window
        if known.get("rpm") is not None and known["rpm"] <= rpm:
            return
        await self._redis.hset(self._key(model_key), mapping={"observed": 1, "rpm": rpm})
        self._cache.pop(model_key, None)
        log.info("learned rpm=%d for %s from a 429", rpm, model_key)

    async def forget(self, model_key: str) -> None:
        await self._redis.delete(self._key(model_key))
        self._cache.pop(model_key, None)
