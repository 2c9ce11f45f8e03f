"""What a generation is, independent of gRPC: the request, the events a provider streams, and its errors.

A provider turns a `GenerationRequest` into an async stream of `TextDelta`s followed by exactly one
`Finished`. A provider that fails raises a `ProviderError`; one whose stream ends without a `Finished`
is treated as cut (the router never reports a cut stream as a normal end).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Passage:
    """A retrieved passage the answer must be grounded in; numbered [1], [2], ... in order."""

    text: str
    page: int = 0
    document_id: str = ""
    segment_id: str = ""
    version: int = 0


@dataclass(frozen=True)
class ChatTurn:
    role: str
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    question: str = ""
    messages: Sequence[ChatTurn] = ()
    passages: Sequence[Passage] = ()
    model: str = ""
    """Preferred model; empty lets the router choose."""
    temperature: float | None = None
    max_tokens: int | None = None
    prompt_template_id: str = ""
    """The caller's prompt template, part of the cache key with its version."""
    prompt_template_version: int = 0
    priority: str = "interactive"
    """`interactive` (a person is waiting) or `batch`: batch traffic waits behind interactive traffic and
    may not use the capacity reserved for it."""


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0

    def cost_usd(self, model: ModelSpec) -> float:
        return (
            self.input_tokens * model.input_price_per_mtok + self.output_tokens * model.output_price_per_mtok
        ) / 1_000_000


@dataclass(frozen=True)
class ModelSpec:
    name: str
    provider: str
    context_window: int = 0
    quality_tier: str = ""
    input_price_per_mtok: float = 0.0
    output_price_per_mtok: float = 0.0


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    finish_reason: str
    usage: TokenUsage | None = None
    """What the provider reported; None when it reported nothing (the caller then counts)."""


ProviderEvent = TextDelta | Finished


class ProviderError(Exception):
    """A provider call failed. `status` is the HTTP status when there was one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after_seconds: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_seconds = retry_after_seconds
        self.headers: Mapping[str, str] = headers or {}
        """The HTTP response headers, when there was a response (rate-limit learning reads them)."""

    @property
    def kind(self) -> str:
        """A short error class for logs and the ledger: `rate_limited`, `timeout`, `http_503`, ..."""
        return type(self).__name__


class ProviderUnavailable(ProviderError):
    """5xx, connection refused or dropped: worth retrying or falling back."""


class ProviderTimeout(ProviderUnavailable):
    """No answer (or no first token) in time."""


class ProviderRateLimited(ProviderError):
    """429: the provider's RPM/TPM limit; `retry_after_seconds` from its Retry-After header."""


class ProviderRejected(ProviderError):
    """4xx other than 429: this request will not succeed with this provider as it is."""


class StreamCut(ProviderError):
    """The stream ended or broke after it had started, without a finish reason."""
