"""Deadline propagation: a handler's remaining time bounds every call it makes downstream.

The server interceptor records when the incoming call's deadline expires; `timeout()` gives an outgoing
call the smaller of its own default and the time that remains, so a slow chain fails fast instead of
running on after the caller gave up.
"""

from __future__ import annotations

import contextvars
import time

from pdfchat.common.errors import DeadlineExceeded

_expires_at: contextvars.ContextVar[float | None] = contextvars.ContextVar("pdfchat_deadline", default=None)


def bind(remaining_seconds: float | None) -> contextvars.Token[float | None]:
    expires = None if remaining_seconds is None else time.monotonic() + remaining_seconds
    return _expires_at.set(expires)


def reset(token: contextvars.Token[float | None]) -> None:
    _expires_at.reset(token)


def remaining() -> float | None:
    """Seconds left of the current call's deadline, or None when it has none."""
    expires = _expires_at.get()
    return None if expires is None else expires - time.monotonic()


def timeout(default: float) -> float:
    """The timeout for an outgoing call; raises DeadlineExceeded when no time is left."""
    left = remaining()
    if left is None:
        return default
    if left <= 0:
        raise DeadlineExceeded("deadline exceeded before the downstream call")
    return min(default, left)
