"""Tenant budgets: the policy on its own (unit), and through real orchestrator processes with a real ledger
in Postgres: a tenant over budget is downgraded to the extractive provider, or refused, and GetUsage
shows what it spent."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import grpc
import pytest

from pdfchat.common.errors import ResourceExhausted
from pdfchat.common.identity import Identity
from pdfchat.orchestrator.budgets import TenantBudgets, next_month_start
from pdfchat.orchestrator.generation import GenerationRequest
from pdfchat.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from pdfchat_tools import devstack
from pdfchat_tools.llm_sim import SimServer

REQUEST = GenerationRequest(question="q", model="big-model")
NOW = datetime(2025, 12, 20, 12, 0, tzinfo=UTC)


def spend_of(spent: dict[str, float], reads: list[datetime] | None = None) -> Callable[[str, datetime], object]:
    async def read(tenant_id: str, since: datetime) -> float:
        if reads is not None:
            reads.append(since)
        return spent.get(tenant_id, 0.0)

    return read


async def test_unlimited_by_default_and_never_reads_the_ledger() -> None:
    reads: list[datetime] = []
    budgets = TenantBudgets(spend_of({"t": 1e9}, reads))  # type: ignore[arg-type]
    assert await budgets.exhausted("t") is None
    assert reads == []


async def test_a_tenant_over_its_budget_is_downgraded_to_the_cheaper_model() -> None:
    reads: list[datetime] = []
    budgets = TenantBudgets(
        spend_of({"poor": 10.0, "rich": 10.0}, reads),  # type: ignore[arg-type]
        tenant_monthly_usd={"poor": 5.0},
        default_monthly_usd=100.0,
        downgrade_model="cheap-model",
        now=lambda: NOW,
    )
    assert await budgets.exhausted("rich") is None
    state = await budgets.exhausted("poor")
    assert state is not None
    assert state.limit_usd == 5.0
    assert budgets.apply(REQUEST, state).model == "cheap-model"
    assert reads[0] == datetime(2025, 12, 1, tzinfo=UTC)


async def test_refuse_policy_raises_resource_exhausted_with_the_time_to_reset() -> None:
    budgets = TenantBudgets(
        spend_of({"poor": 5.0}),  # type: ignore[arg-type]
        default_monthly_usd=5.0,
        policy="refuse",
        now=lambda: NOW,
    )
    state = await budgets.exhausted("poor")
    assert state is not None
    with pytest.raises(ResourceExhausted) as refused:
        budgets.apply(REQUEST, state)
    assert "monthly LLM budget spent" in str(refused.value)
    assert "2026-01-01" in str(refused.value)
    assert refused.value.retry_after_seconds == pytest.approx((datetime(2026, 1, 1, tzinfo=UTC) - NOW).total_seconds())


async def test_spend_noted_by_this_replica_counts_before_the_next_ledger_read() -> None:
    budgets = TenantBudgets(spend_of({}), default_monthly_usd=1.0, refresh_seconds=3600)  # type: ignore[arg-type]
    assert await budgets.exhausted("t") is None
    budgets.note("t", 0.6)
    assert await budgets.exhausted("t") is None
    budgets.note("t", 0.6)
    assert await budgets.exhausted("t") is not None


def test_next_month_wraps_the_year() -> None:
    assert next_month_start(NOW) == datetime(2026, 1, 1, tzinfo=UTC)
    assert next_month_start(datetime(2025, 3, 31, tzinfo=UTC)) == datetime(2025, 4, 1, tzinfo=UTC)


# --- through real processes ------------------------------------------------------------------------------

SPEC = orchestrator_pb2.GenerationSpec(
    question="When was the tower finished?",
    passages=[
        orchestrator_pb2.ContextPassage(
            segment_id="s1", document_id="d1", version=1, page=7, text="The tower was finished in 1889."
        )
    ],
)


def orchestrator(stack_factory: Callable[..., devstack.Stack], sim: SimServer, **budget_env: str) -> str:
    stack = stack_factory(
        ("orchestrator",),
        extra_env={
            "PDFCHAT_LLM_BASE_URL": sim.openai_base_url,
            "PDFCHAT_LLM_MODEL": "sim-model",
            "PDFCHAT_LLM_INPUT_PRICE_PER_MTOK": "1.0",
            "PDFCHAT_LLM_OUTPUT_PRICE_PER_MTOK": "4.0",
            "PDFCHAT_BUDGET_REFRESH_SECONDS": "0",
            **budget_env,
        },
    )
    return stack.config.env["PDFCHAT_ORCHESTRATOR_ADDR"]


def question(n: int) -> orchestrator_pb2.GenerationSpec:
    spec = orchestrator_pb2.GenerationSpec()
    spec.CopyFrom(SPEC)
    spec.question = f"{SPEC.question} ({n})"  # distinct, so the cache does not answer
    return spec


@pytest.mark.integration
async def test_a_tenant_over_budget_is_downgraded_to_extractive_and_others_are_not(
    stack_factory: Callable[..., devstack.Stack], llm_sim: SimServer
) -> None:
    poor, rich = f"poor-{uuid.uuid4().hex[:6]}", f"rich-{uuid.uuid4().hex[:6]}"
    address = orchestrator(
        stack_factory,
        llm_sim,
        PDFCHAT_BUDGET_TENANT_MONTHLY_USD=json.dumps({poor: 0.000001}),
        PDFCHAT_BUDGET_POLICY="downgrade",
    )
    async with grpc.aio.insecure_channel(address) as channel:
        client = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        poor_md, rich_md = Identity(tenant_id=poor).to_metadata(), Identity(tenant_id=rich).to_metadata()
        first = await client.Generate(orchestrator_pb2.GenerateRequest(spec=question(1)), metadata=poor_md, timeout=20)
        assert first.model == "sim-model"
        assert first.usage.cost_usd > 0.000001
        second = await client.Generate(orchestrator_pb2.GenerateRequest(spec=question(2)), metadata=poor_md, timeout=20)
        assert second.model == "extractive"
        assert "1889" in second.text
        # A cached answer costs nothing, so it is still served to a tenant over budget.
        again = await client.Generate(orchestrator_pb2.GenerateRequest(spec=question(1)), metadata=poor_md, timeout=20)
        assert (again.model, again.cached) == ("sim-model", True)
        other = await client.Generate(orchestrator_pb2.GenerateRequest(spec=question(2)), metadata=rich_md, timeout=20)
        assert other.model == "sim-model"
        usage = await client.GetUsage(orchestrator_pb2.GetUsageRequest(), metadata=poor_md, timeout=10)
    assert usage.requests == 3
    assert usage.usage.cost_usd == pytest.approx(first.usage.cost_usd)
    assert sorted((m.model, m.requests) for m in usage.by_model) == [("extractive", 1), ("sim-model", 2)]


@pytest.mark.integration
async def test_a_tenant_over_budget_is_refused_with_resource_exhausted_under_the_refuse_policy(
    stack_factory: Callable[..., devstack.Stack], llm_sim: SimServer
) -> None:
    address = orchestrator(stack_factory, llm_sim, PDFCHAT_BUDGET_MONTHLY_USD="0", PDFCHAT_BUDGET_POLICY="refuse")
    async with grpc.aio.insecure_channel(address) as channel:
        client = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        metadata = Identity(tenant_id=f"t-{uuid.uuid4().hex[:6]}").to_metadata()
        call = client.GenerateStream(
            orchestrator_pb2.GenerateStreamRequest(spec=question(1)), metadata=metadata, timeout=20
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "monthly LLM budget spent" in (refused.value.details() or "")
    trailers = dict(refused.value.trailing_metadata() or ())
    assert float(trailers["retry-after-seconds"]) > 0
