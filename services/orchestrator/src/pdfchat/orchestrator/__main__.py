"""Starts the orchestrator: `python -m pdfchat.orchestrator`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from redis.asyncio import Redis

from pdfchat.common import db, redis_client
from pdfchat.common.grpc_server import ServiceSpec, serve
from pdfchat.common.logs import configure_logging
from pdfchat.common.settings import port_of
from pdfchat.orchestrator import config, document_events, providers
from pdfchat.orchestrator.breaker import CircuitBreakers
from pdfchat.orchestrator.budgets import TenantBudgets
from pdfchat.orchestrator.cache import ResponseCache
from pdfchat.orchestrator.config import ConfigWatcher, LLMConfig
from pdfchat.orchestrator.learned import LearnedLimits
from pdfchat.orchestrator.ledger import SCHEMA, UsageLedger
from pdfchat.orchestrator.limiter import Limiter
from pdfchat.orchestrator.orchestration import Orchestrator
from pdfchat.orchestrator.providers import ExtractiveProvider
from pdfchat.orchestrator.retry import RetryBudget, RetryPolicy
from pdfchat.orchestrator.router import Router, RouterControls
from pdfchat.orchestrator.server import SERVICE_NAME, OrchestratorServicer
from pdfchat.orchestrator.settings import OrchestratorSettings
from pdfchat.v1 import orchestrator_pb2_grpc

MIGRATIONS = Path(__file__).parent / "migrations"


def llm_config(settings: OrchestratorSettings) -> LLMConfig:
    """The YAML file's configuration when `PDFCHAT_LLM_CONFIG` is set, else the single `PDFCHAT_LLM_*` endpoint."""
    if settings.llm_config is not None:
        return config.load(settings.llm_config)
    return config.single_endpoint(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key,
        model=settings.llm_model,
        context_window=settings.llm_context_window,
        quality_tier=settings.llm_quality_tier,
        input_price_per_mtok=settings.llm_input_price_per_mtok,
        output_price_per_mtok=settings.llm_output_price_per_mtok,
        request_timeout_seconds=settings.llm_request_timeout_seconds,
    )


def build_router(settings: OrchestratorSettings, redis: Redis) -> tuple[Router, ConfigWatcher | None]:
    """The router with its shared limiter, breakers, retry budget and learned limits, and the config watcher."""
    prefix = settings.limiter_prefix
    controls = RouterControls(
        limiter=Limiter(
            redis,
            prefix=prefix,
            lease_seconds=settings.limiter_lease_seconds,
            max_waiters=settings.limiter_max_waiters,
            max_wait_seconds=settings.limiter_max_wait_seconds,
        ),
        breakers=CircuitBreakers(
            redis,
            prefix=prefix,
            failure_threshold=settings.breaker_failure_threshold,
            failure_window_seconds=settings.breaker_failure_window_seconds,
            open_seconds=settings.breaker_open_seconds,
            probe_seconds=settings.breaker_probe_seconds,
        ),
        learned=LearnedLimits(redis, prefix=prefix, discovery_concurrency=settings.limiter_discovery_concurrency),
        retry_budget=RetryBudget(
            redis, prefix=prefix, ratio=settings.retry_budget_ratio, min_retries=settings.retry_budget_min
        ),
        retry_policy=RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            base_seconds=settings.retry_base_seconds,
            cap_seconds=settings.retry_cap_seconds,
            max_wait_seconds=settings.retry_max_wait_seconds,
        ),
        min_call_seconds=settings.llm_min_call_seconds,
        estimated_output_tokens=settings.llm_estimated_output_tokens,
    )
    router = Router(
        extractive=ExtractiveProvider(),
        first_token_timeout_seconds=settings.llm_first_token_timeout_seconds,
        controls=controls,
    )
    initial = llm_config(settings)
    router.apply(initial, providers.build(initial, router.observe_headers))
    if settings.llm_config is None:
        return router, None
    watcher = ConfigWatcher(
        settings.llm_config,
        lambda new: router.apply(new, providers.build(new, router.observe_headers)),
        interval_seconds=settings.llm_config_reload_seconds,
    )
    return router, watcher


async def main() -> None:
    settings = OrchestratorSettings()
    configure_logging("orchestrator", settings.log_level)
    pool = await db.create_pool(
        settings.database_url, min_size=settings.database_pool_min, max_size=settings.database_pool_max
    )
    await db.migrate(pool, SCHEMA, MIGRATIONS)
    redis = redis_client.create_redis(settings.redis_url)
    router, watcher = build_router(settings, redis)
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

    async def watch_llm_config(stop: asyncio.Event) -> None:
        if watcher is not None:
            await watcher.run(stop)

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
            background=(ledger.run, invalidate_cached_answers, watch_llm_config),
            on_stop=stop,
        ),
        settings,
    )


if __name__ == "__main__":
    asyncio.run(main())
