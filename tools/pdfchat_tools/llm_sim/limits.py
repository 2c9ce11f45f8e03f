"""RPM and TPM limits over a sliding 60-second window, answered the way OpenAI answers them.

A request is admitted when both its one request and its tokens fit in what the last 60 seconds left;
otherwise it is refused with the seconds until enough of the window expires (Retry-After). Admitted or
not, every answer carries `x-ratelimit-*` headers describing the limit, what remains and when it resets.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Admission:
    admitted: bool
    retry_after_seconds: float
    headers: dict[str, str]


class SlidingWindowLimiter:
    """Counts admitted requests and tokens in the last minute. Not thread-safe: one event loop owns it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._events: deque[tuple[float, int]] = deque()

    def reset(self) -> None:
        self._events.clear()

    def admit(self, tokens: int, rpm: int | None, tpm: int | None) -> Admission:
        now = self._clock()
        while self._events and self._events[0][0] <= now - WINDOW_SECONDS:
            self._events.popleft()
        used_requests = len(self._events)
        used_tokens = sum(t for _, t in self._events)
        wait_requests = 0.0 if rpm is None or used_requests + 1 <= rpm else self._wait_until_free(now, rpm, 1, False)
        wait_tokens = (
            0.0 if tpm is None or used_tokens + tokens <= tpm else self._wait_until_free(now, tpm, tokens, True)
        )
        admitted = wait_requests == 0.0 and wait_tokens == 0.0
        if admitted:
            self._events.append((now, tokens))
            used_requests += 1
            used_tokens += tokens
        headers: dict[str, str] = {}
        if rpm is not None:
            headers["x-ratelimit-limit-requests"] = str(rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(rpm - used_requests, 0))
            headers["x-ratelimit-reset-requests"] = _duration(self._reset_in(now, "requests"))
        if tpm is not None:
            headers["x-ratelimit-limit-tokens"] = str(tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(tpm - used_tokens, 0))
            headers["x-ratelimit-reset-tokens"] = _duration(self._reset_in(now, "tokens"))
        return Admission(admitted, max(wait_requests, wait_tokens), headers)

    def _wait_until_free(self, now: float, limit: int, needed: int, by_tokens: bool) -> float:
        """Seconds until the window has room for `needed` more; infinite when it never will."""
        if needed > limit:
            return math.inf
        used = sum(t for _, t in self._events) if by_tokens else len(self._events)
        for at, tokens in self._events:
            used -= tokens if by_tokens else 1
            if used + needed <= limit:
                return max(at + WINDOW_SECONDS - now, 0.001)
        return 0.001

    def _reset_in(self, now: float, _kind: str) -> float:
        """Seconds until the window is fully empty again (the oldest event leaves last for a full reset)."""
        if not self._events:
            return 0.0
        return max(self._events[-1][0] + WINDOW_SECONDS - now, 0.0)


def _duration(seconds: float) -> str:
    """OpenAI's reset format: `6m0s`, `1.5s`, `20ms`."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    if minutes:
        return f"{int(minutes)}m{rest:.0f}s"
    return f"{rest:.3g}s"
