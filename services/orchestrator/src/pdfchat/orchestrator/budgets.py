"""Per-tenant monthly LLM budgets, in USD, with a downgrade-or-refuse policy.

A tenant's budget is its entry in `tenant_monthly_usd`, else `default_monthly_usd`, else unlimited (the
default: no check at all, nothing on the hot path). The month is the UTC calendar month.

Spend is what the usage ledger recorded this month: the committed events plus this replica's buffered
ones, read at most every `refresh_seconds` per tenant, plus what this replica `note()`d since that read.
Other replicas' spend shows up once their ledgers flush (about a second) and this replica refreshes, so
a tenant can overshoot by what the whole suite spends in that interval: a soft limit, which is what a
monthly budget needs, at no cost per request.

Once a tenant has spent its budget, `policy` decides:
- `downgrade`: the request goes to `downgrade_model` (the free extractive provider by default, or a
  cheaper LLM), so the user still gets a cited answer;
- `refuse`: RESOURCE_EXHAUSTED, with the time until the budget resets as the retry hint.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pdfchat.common.errors import ResourceExhausted
from pdfchat.orchestrator.generation import GenerationRequest

log = logging.getLogger(__name__)

BudgetPolicy = Literal["downgrade", "refuse"]
SpendReader = Callable[[str, datetime], Awaitable[float]]
"""(tenant_id, month_start) -> USD spent since month_start."""


@dataclass(frozen=True)
class BudgetState:
    tenant_id: str
    limit_usd: float
    spent_usd: float
    resets_at: datetime

    @property
    def exhausted(self) -> bool:
        return self.spent_usd >= self.limit_usd


@dataclass
class _Snapshot:
    month_start: datetime
    read_at: float
    spent_usd: float


def month_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def next_month_start(now: datetime) -> datetime:
    return datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)


class TenantBudgets:
    def __init__(
        self,
        spend: SpendReader,
        *,
        default_monthly_usd: float | None = None,
        tenant_monthly_usd: Mapping[str, float] | None = None,
        policy: BudgetPolicy = "downgrade",
        downgrade_model: str = "extractive",
        refresh_seconds: float = 5.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._spend = spend
        self._default = default_monthly_usd
        self._limits = dict(tenant_monthly_usd or {})
        self.policy: BudgetPolicy = policy
        self.downgrade_model = downgrade_model
        self._refresh = refresh_seconds
        self._now = now
        self._snapshots: dict[str, _Snapshot] = {}

    def limit_for(self, tenant_id: str) -> float | None:
        return self._limits.get(tenant_id, self._default)

    def note(self, tenant_id: str, cost_usd: float) -> None:
        """Adds a request's cost to this replica's view until the next read of the ledger."""
        snapshot = self._snapshots.get(tenant_id)
        if snapshot is not None and cost_usd:
            snapshot.spent_usd += cost_usd

    async def state(self, tenant_id: str) -> BudgetState | None:
        """The tenant's budget and spend this month; None when it has no budget."""
        limit = self.limit_for(tenant_id)
        if limit is None:
            return None
        now = self._now()
        start = month_start(now)
        snapshot = self._snapshots.get(tenant_id)
        if snapshot is None or snapshot.month_start != start or time.monotonic() - snapshot.read_at >= self._refresh:
            spent = await self._spend(tenant_id, start)
            snapshot = _Snapshot(month_start=start, read_at=time.monotonic(), spent_usd=spent)
            self._snapshots[tenant_id] = snapshot
        return BudgetState(tenant_id, limit, snapshot.spent_usd, next_month_start(now))

    async def exhausted(self, tenant_id: str) -> BudgetState | None:
        """The tenant's budget state when it is spent; None while it may still spend."""
        state = await self.state(tenant_id)
        return state if state is not None and state.exhausted else None

    def apply(self, request: GenerationRequest, state: BudgetState) -> GenerationRequest:
        """The request as the policy allows it for a tenant whose budget is spent.

        Raises:
            ResourceExhausted: the policy is `refuse`.
        """
        if self.policy == "downgrade":
            if request.model != self.downgrade_model:
                log.info(
                    "tenant %s spent $%.4f of $%.2f: downgrading %r to %r",
                    state.tenant_id,
                    state.spent_usd,
                    state.limit_usd,
                    request.model or "(default)",
                    self.downgrade_model,
                )
            return dataclasses.replace(request, model=self.downgrade_model)
        wait = max(1.0, (state.resets_at - self._now()).total_seconds())
        raise ResourceExhausted(
            f"monthly LLM budget spent: tenant {state.tenant_id} has used ${state.spent_usd:.2f} of "
            f"${state.limit_usd:.2f}; it resets on {state.resets_at:%Y-%m-%d} 00:00 UTC",
            retry_after_seconds=wait,
        )
