"""One generation request end to end: route it, time it, and account for it however it ends.

Every request leaves exactly one usage event for the calling tenant, whether it completed, broke after
its first token (`interrupted`, with the partial usage), was abandoned by the caller (`cancelled`) or
failed (`error`). The event is buffered in the ledger, never awaited on the hot path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from pdfchat.common import identity
from pdfchat.orchestrator.generation import GenerationRequest, ModelSpec, TextDelta
from pdfchat.orchestrator.ledger import UsageEvent, UsageLedger
from pdfchat.orchestrator.router import Completion, Router, RoutingTrace, StreamInterrupted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    text: str
    completion: Completion


class Orchestrator:
    def __init__(self, router: Router, ledger: UsageLedger) -> None:
        self.router = router
        self.ledger = ledger

    def models(self) -> list[ModelSpec]:
        return self.router.models()

    async def stream(self, request: GenerationRequest) -> AsyncIterator[TextDelta | Completion]:
        """The router's stream, with one usage event recorded when it ends in any way."""
        meter = _Meter(request)
        try:
            async for event in self.router.stream(request, meter.trace):
                if isinstance(event, Completion):
                    meter.status = "ok"
                yield event
        except BaseException as exc:
            meter.failed(exc)
            raise
        finally:
            self.ledger.record(meter.event())

    async def generate(self, request: GenerationRequest) -> Answer:
        meter = _Meter(request)
        try:
            text, completion = await self.router.generate(request, meter.trace)
            meter.status = "ok"
            return Answer(text, completion)
        except BaseException as exc:
            meter.failed(exc)
            raise
        finally:
            self.ledger.record(meter.event())


class _Meter:
    """Times one request and turns its routing trace into a usage event."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.caller = identity.require()
        self.trace = RoutingTrace()
        self.started = time.monotonic()
        self.status = "error"
        self.error: str | None = None

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, StreamInterrupted):
            self.status, self.error = "interrupted", exc.message
        elif isinstance(exc, Exception):
            self.status, self.error = "error", f"{type(exc).__name__}: {exc}"
        else:  # CancelledError, GeneratorExit: the caller went away
            self.status, self.error = "cancelled", type(exc).__name__

    def event(self) -> UsageEvent:
        now = time.monotonic()
        route = self.trace.route
        usage = self.trace.usage(self.request) if route is not None else None
        first_token = self.trace.first_token_at
        return UsageEvent(
            tenant_id=self.caller.tenant_id,
            request_id=self.caller.request_id,
            occurred_at=datetime.now(UTC),
            model=route.model.name if route else self.request.model,
            provider=route.provider.name if route else "",
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cost_usd=usage.cost_usd(route.model) if usage and route else 0.0,
            latency_ms=round((now - self.started) * 1000),
            first_token_ms=None if first_token is None else round((first_token - self.started) * 1000),
            status=self.status,
            error=self.error,
            fallback_reason="; ".join(self.trace.fallbacks) or None,
        )
