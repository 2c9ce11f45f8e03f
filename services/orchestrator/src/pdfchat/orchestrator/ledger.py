"""The usage ledger: one event per generation request, written to Postgres off the hot path.

`record()` only appends to an in-memory buffer, so a request never waits on the database; the
`run()` background task writes the buffer in batches (COPY) every `flush_interval_seconds`, or sooner
when a batch is full, and once more on shutdown. If Postgres is down the events stay buffered and are
retried; past `max_pending` the oldest are dropped with an error log, because unbounded memory would
take the whole service down with the database. `usage()` flushes this replica's buffer first, so a
tenant reading its usage right after a request sees that request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import astuple, dataclass, field, fields
from datetime import UTC, datetime

import asyncpg

log = logging.getLogger(__name__)

SCHEMA = "orchestrator"
TABLE = "usage_events"


@dataclass(frozen=True)
class UsageEvent:
    tenant_id: str
    request_id: str
    occurred_at: datetime
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: int
    first_token_ms: int | None
    status: str
    error: str | None = None
    fallback_reason: str | None = None
    cached: bool = False


_COLUMNS = [f.name for f in fields(UsageEvent)]


@dataclass(frozen=True)
class ModelTotals:
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class UsageSummary:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    by_model: Sequence[ModelTotals] = field(default_factory=tuple)


class UsageLedger:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        batch_size: int = 500,
        flush_interval_seconds: float = 1.0,
        max_pending: int = 50_000,
    ) -> None:
        self._pool = pool
        self._batch_size = batch_size
        self._interval = flush_interval_seconds
        self._pending: deque[UsageEvent] = deque()
        self._max_pending = max_pending
        self._lock = asyncio.Lock()
        self._batch_ready = asyncio.Event()
        self.dropped = 0

    def record(self, event: UsageEvent) -> None:
        """Buffers the event for the next batch; never blocks and never raises."""
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped += 1
            log.error("usage ledger buffer full (%d events): dropped the oldest event", self._max_pending)
        self._pending.append(event)
        if len(self._pending) >= self._batch_size:
            self._batch_ready.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Writes every buffered event; returns how many. Events stay buffered when the write fails."""
        written = 0
        async with self._lock:
            while self._pending:
                batch = [self._pending[i] for i in range(min(self._batch_size, len(self._pending)))]
                async with self._pool.acquire() as conn:
                    await conn.copy_records_to_table(
                        TABLE, schema_name=SCHEMA, columns=_COLUMNS, records=[astuple(e) for e in batch]
                    )
                # Drop only after the commit: a failed write keeps them for the next attempt.
                for _ in batch:
                    self._pending.popleft()
                written += len(batch)
        return written

    async def run(self, stop: asyncio.Event) -> None:
        """Background writer: flushes every interval or when a batch is full, and once more on stop."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(stop, self._batch_ready), timeout=self._interval)
            self._batch_ready.clear()
            try:
                await self.flush()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("usage ledger write failed (%d events kept for retry): %r", self.pending, exc)
        try:
            await self.flush()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error("usage ledger lost %d events at shutdown: %r", self.pending, exc)

    async def cost_since(self, tenant_id: str, since: datetime) -> float:
        """USD spent by a tenant since `since`: the committed events plus this replica's buffered ones.

        Does not flush: a budget check sits on the request path and must not wait on a write.
        """
        async with self._pool.acquire() as conn:
            committed = await conn.fetchval(
                f"SELECT coalesce(sum(cost_usd), 0) FROM {SCHEMA}.{TABLE} WHERE tenant_id = $1 AND occurred_at >= $2",
                tenant_id,
                since,
            )
        buffered = sum(e.cost_usd for e in list(self._pending) if e.tenant_id == tenant_id and e.occurred_at >= since)
        return float(committed) + buffered

    async def usage(self, tenant_id: str, start: datetime | None, end: datetime | None) -> UsageSummary:
        """Totals for one tenant over [start, end); an open bound is unbounded."""
        try:
            await self.flush()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("usage ledger flush before read failed: %r", exc)
        lower = start or datetime(1970, 1, 1, tzinfo=UTC)
        upper = end or datetime(9999, 1, 1, tzinfo=UTC)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"""
                SELECT model, count(*) AS requests, sum(input_tokens) AS input_tokens,
                       sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd
                FROM {SCHEMA}.{TABLE}
                WHERE tenant_id = $1 AND occurred_at >= $2 AND occurred_at < $3
                GROUP BY model ORDER BY model
                """,
                tenant_id,
                lower,
                upper,
            )
        by_model = [
            ModelTotals(r["model"], r["requests"], int(r["input_tokens"]), int(r["output_tokens"]), r["cost_usd"])
            for r in rows
        ]
        return UsageSummary(
            requests=sum(m.requests for m in by_model),
            input_tokens=sum(m.input_tokens for m in by_model),
            output_tokens=sum(m.output_tokens for m in by_model),
            cost_usd=sum(m.cost_usd for m in by_model),
            by_model=by_model,
        )


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
