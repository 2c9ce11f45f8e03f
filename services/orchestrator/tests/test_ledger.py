"""The usage ledger against a real Postgres: batched writes off the hot path, tenant-scoped totals."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from pdfchat.common import db
from pdfchat.orchestrator.ledger import SCHEMA, UsageEvent, UsageLedger

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[1] / "src" / "pdfchat" / "orchestrator" / "migrations"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await db.create_pool(database_url, max_size=4)
    await db.migrate(created, SCHEMA, MIGRATIONS)
    yield created
    await created.close()


def event(tenant: str, model: str = "m", at: datetime | None = None, output: int = 5) -> UsageEvent:
    return UsageEvent(
        tenant_id=tenant,
        request_id=uuid.uuid4().hex,
        occurred_at=at or datetime.now(UTC),
        model=model,
        provider="p",
        input_tokens=10,
        output_tokens=output,
        cost_usd=0.5,
        latency_ms=12,
        first_token_ms=3,
        status="ok",
    )


async def test_background_writer_flushes_recorded_events_in_batches(pool: asyncpg.Pool) -> None:
    tenant = uuid.uuid4().hex
    ledger = UsageLedger(pool, batch_size=3, flush_interval_seconds=0.05)
    stop = asyncio.Event()
    writer = asyncio.create_task(ledger.run(stop))
    for _ in range(7):
        ledger.record(event(tenant))
    for _ in range(100):
        if ledger.pending == 0:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await writer
    count = await pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.usage_events WHERE tenant_id = $1", tenant)
    assert count == 7


async def test_usage_sums_one_tenant_within_the_time_range(pool: asyncpg.Pool) -> None:
    mine, other = uuid.uuid4().hex, uuid.uuid4().hex
    now = datetime.now(UTC)
    ledger = UsageLedger(pool)
    ledger.record(event(mine, "a", now, output=5))
    ledger.record(event(mine, "b", now, output=7))
    ledger.record(event(mine, "a", now - timedelta(days=2), output=100))
    ledger.record(event(other, "a", now, output=1000))
    summary = await ledger.usage(mine, now - timedelta(hours=1), None)
    assert (summary.requests, summary.output_tokens, summary.input_tokens) == (2, 12, 20)
    assert summary.cost_usd == pytest.approx(1.0)
    assert [(m.model, m.requests, m.output_tokens) for m in summary.by_model] == [("a", 1, 5), ("b", 1, 7)]
    everything = await ledger.usage(mine, None, None)
    assert everything.requests == 3


async def test_full_buffer_drops_the_oldest_events_instead_of_growing() -> None:
    ledger = UsageLedger(pool=None, max_pending=2)  # type: ignore[arg-type]
    for _ in range(3):
        ledger.record(event("t"))
    assert (ledger.pending, ledger.dropped) == (2, 1)
