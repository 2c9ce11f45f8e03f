"""Starts the orchestrator: `python -m pdfchat.orchestrator`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

from pdfchat.common import db, redis_client
from pdfchat.common.grpc_server import ServiceSpec, serve
from pdfchat.common.logs import configure_logging
from pdfchat.common.settings import port_of
from pdfchat.orchestrator import document_events
from pdfchat.orchestrator.budgets import TenantBudgets
from pdfchat.orchestrator.cache import ResponseCache
from pdfchat.orchestrator.generation import ModelSpec
from pdfchat.orchestrator.ledger import SCHEMA, UsageLedger
from pdfchat.orchestrator.orchestration import Orchestrator
from pdfchat.orchestrator.providers import ExtractiveProvider, OpenAICompatibleProvider, Provider
from pdfchat.orchestrator.router import Router
from pdfchat.orchestrator.server import SERVICE_NAME, OrchestratorServicer
from pdfchat.orchestrator.settings import OrchestratorSettings
from pdfchat.v1 import orchestrator_pb2_grpc

MIGRATIONS = Path(__file__).parent / "migrations"


def llm_provider(settings: OrchestratorSettings) -> Provider | None:
    """The provider for `PDFCHAT_LLM_BASE_URL`, or None when it is not set."""
    if not settings.llm_base_url:
        return None
    host = urlsplit(settings.llm_base_url).hostname or "llm"
    model = ModelSpec(
        name=settings.llm_model,
        provider=host,
        context_window=settings.llm_context_window,
        quality_tier=settings.llm_quality_tier,
        input_price_per_mtok=settings.llm_input_price_per_mtok,
        output_price_per_mtok=settings.llm_output_price_per_mtok,
    )
    return OpenAICompatibleProvider(
        name=host,
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key,
        models=[model],
        request_timeout_seconds=settings.llm_request_timeout_seconds,
    )


async def main() -> None:
    settings = OrchestratorSettings()
    configure_logging("orchestrator", settings.log_level)
    pool = await db.create_pool(
        settings.database_url, min_size=settings.database_pool_min, max_size=settings.database_pool_max
    )
    await db.migrate(pool, SCHEMA, MIGRATIONS)
    redis = redis_client.create_redis(settings.redis_url)
    llm = llm_provider(settings)
    router = Router(
        llm=llm, extractive=ExtractiveProvider(), first_token_timeout_seconds=settings.llm_first_token_timeout_seconds
    )
    ledger = UsageLedger(
        pool,
        batch_size=settings.ledger_batch_size,
        flush_interval_seconds=settings.ledger_flush_interval_seconds,
        max_pending=settings.ledger_max_pending,
    )
    cache = (
        ResponseCache(
            redis,
            namespace=settings.jobs_namespace,
            ttl_seconds=settings.cache_ttl_seconds,
            lock_seconds=settings.cache_lock_seconds,
            wait_seconds=settings.cache_wait_seconds,
        )
        if settings.cache_enabled
        else None
    )
    budgets = TenantBudgets(
        ledger.cost_since,
        default_monthly_usd=settings.budget_monthly_usd,
        tenant_monthly_usd=settings.budget_tenant_monthly_usd,
        policy=settings.budget_policy,
        downgrade_model=settings.budget_downgrade_model,
        refresh_seconds=settings.budget_refresh_seconds,
    )
    orchestrator = Orchestrator(router, ledger, cache=cache, budgets=budgets)

    async def invalidate_cached_answers(stop: asyncio.Event) -> None:
        if cache is not None:
            await document_events.run(settings.nats_url, settings.jobs_namespace, cache, stop)

    async def stop() -> None:
        for provider in router.providers:
            await provider.close()
        await redis.aclose()
        await pool.close()

    await serve(
        ServiceSpec(
            name="orchestrator",
            port=port_of(settings.orchestrator_addr),
            register=lambda server: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(
                OrchestratorServicer(orchestrator), server
            ),
            service_names=(SERVICE_NAME,),
            dependency_checks=(lambda: db.check(pool), lambda: redis_client.check(redis)),
            background=(ledger.run, invalidate_cached_answers),
            on_stop=stop,
        ),
        settings,
    )


if __name__ == "__main__":
    asyncio.run(main())
