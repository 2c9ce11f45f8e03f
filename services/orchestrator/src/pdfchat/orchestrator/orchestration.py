"""One generation request end to end: budget, cache, route, time it, and account for it however it ends.

Order of decisions: a tenant whose monthly budget is spent is served from the cache when the exact
answer is there (it costs nothing), else downgraded or refused by the budget policy; then the response
cache answers, or makes this request the one that calls upstream for every identical request in
flight (single-flight), or lets it call uncached after waiting too long; then the router.

Every request leaves exactly one usage event for the calling tenant, whether it completed, was answered
from the cache (`cached`: the tokens it delivered, at no cost), broke after its first token (`interrupted`, with the
partial usage), was abandoned by the caller (`cancelled`) or failed (`error`). The event is buffered in
the ledger, never awaited on the hot path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from pdfchat.common import identity
from pdfchat.orchestrator.budgets import TenantBudgets
from pdfchat.orchestrator.cache import CachedAnswer, Lease, Lookup, ResponseCache, answer_from, cache_key
from pdfchat.orchestrator.generation import GenerationRequest, ModelSpec, TextDelta
from pdfchat.orchestrator.ledger import UsageEvent, UsageLedger
from pdfchat.orchestrator.providers import EXTRACTIVE_MODEL
from pdfchat.orchestrator.router import Completion, Router, RoutingTrace, StreamEvent, StreamInterrupted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    text: str
    completion: Completion


class Orchestrator:
    def __init__(
        self,
        router: Router,
        ledger: UsageLedger,
        *,
        cache: ResponseCache | None = None,
        budgets: TenantBudgets | None = None,
    ) -> None:
        self.router = router
        self.ledger = ledger
        self.cache = cache
        self.budgets = budgets

    def models(self) -> list[ModelSpec]:
        return self.router.models()

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        """The router's stream (or a cached answer replayed as one), with one usage event however it ends."""
        meter = _Meter(request)
        lease: Lease | None = None
        try:
            request, lookup = await self._prepare(meter, request)
            if lookup.hit is not None:
                meter.served_from_cache(lookup.hit)
                for piece in lookup.hit.pieces:
                    yield TextDelta(piece)
                yield cached_completion(lookup.hit)
                return
            lease = lookup.lease
            async for event in self.router.stream(request, meter.trace):
                if isinstance(event, Completion):
                    meter.status = "ok"
                    # Stored before the end is sent, so identical waiting requests are released at once.
                    await self._store(lease, meter.trace, event)
                yield event
        except BaseException as exc:
            meter.failed(exc)
            raise
        finally:
            if lease is not None and self.cache is not None:
                await self.cache.release(lease)
            self._record(meter)

    async def generate(self, request: GenerationRequest) -> Answer:
        meter = _Meter(request)
        lease: Lease | None = None
        try:
            request, lookup = await self._prepare(meter, request)
            if lookup.hit is not None:
                meter.served_from_cache(lookup.hit)
                return Answer(lookup.hit.text, cached_completion(lookup.hit))
            lease = lookup.lease
            text, completion = await self.router.generate(request, meter.trace)
            meter.status = "ok"
            await self._store(lease, meter.trace, completion)
            return Answer(text, completion)
        except BaseException as exc:
            meter.failed(exc)
            raise
        finally:
            if lease is not None and self.cache is not None:
                await self.cache.release(lease)
            self._record(meter)

    async def _prepare(self, meter: _Meter, request: GenerationRequest) -> tuple[GenerationRequest, Lookup]:
        """Applies the budget policy and asks the cache; returns the request to route and the cache's answer.

        Raises:
            ResourceExhausted: the tenant's budget is spent and the policy refuses.
        """
        tenant = meter.caller.tenant_id
        if self.budgets is not None and (spent := await self.budgets.exhausted(tenant)) is not None:
            if self.cache is not None and (hit := await self.cache.get(cache_key(tenant, request))) is not None:
                return request, Lookup(hit=hit)
            request = self.budgets.apply(request, spent)
            meter.request = request
        if self.cache is None:
            return request, Lookup()
        return request, await self.cache.lookup(cache_key(tenant, request))

    async def _store(self, lease: Lease | None, trace: RoutingTrace, completion: Completion) -> None:
        """Caches a normal answer from the route the request asked for; never a fallback's stand-in answer."""
        if lease is None or self.cache is None or trace.fallbacks or completion.model.name == EXTRACTIVE_MODEL:
            return
        answer = answer_from(
            trace.output, completion.finish_reason, completion.usage, completion.model.name, completion.provider
        )
        await self.cache.store(lease, answer)

    def _record(self, meter: _Meter) -> None:
        event = meter.event()
        self.ledger.record(event)
        if self.budgets is not None:
            self.budgets.note(event.tenant_id, event.cost_usd)


def cached_completion(hit: CachedAnswer) -> Completion:
    """The end of a replayed answer: the original token counts, no price (nothing was spent upstream)."""
    return Completion(
        hit.finish_reason, hit.usage, ModelSpec(name=hit.model, provider=hit.provider), hit.provider, cached=True
    )


class _Meter:
    """Times one request and turns its routing trace into a usage event."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.caller = identity.require()
        self.trace = RoutingTrace()
        self.started = time.monotonic()
        self.status = "error"
        self.error: str | None = None
        self.hit: CachedAnswer | None = None

    def served_from_cache(self, hit: CachedAnswer) -> None:
        self.hit, self.status = hit, "ok"

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, StreamInterrupted):
            self.status, self.error = "interrupted", exc.message
        elif isinstance(exc, Exception):
            self.status, self.error = "error", f"{type(exc).__name__}: {exc}"
        else:  # CancelledError, GeneratorExit: the caller went away
            self.status, self.error = "cancelled", type(exc).__name__
            log.info(
                "request cancelled after %.1f s (%s, queued for ~%.1f s, first token %s)",
                time.monotonic() - self.started,
                type(exc).__name__,
                self.trace.queued_seconds,
                "received" if self.trace.first_token_at is not None else "not received",
            )

    def event(self) -> UsageEvent:
        now = time.monotonic()
        if self.hit is not None:
            return UsageEvent(
                tenant_id=self.caller.tenant_id,
                request_id=self.caller.request_id,
                occurred_at=datetime.now(UTC),
                model=self.hit.model,
                provider=self.hit.provider,
                input_tokens=self.hit.input_tokens,
                output_tokens=self.hit.output_tokens,
                cost_usd=0.0,
                latency_ms=round((now - self.started) * 1000),
                first_token_ms=None,
                status=self.status,
                error=self.error,
                cached=True,
            )
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
