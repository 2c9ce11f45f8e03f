"""Orchestrator settings: the shared sections plus the LLM endpoint, its prices and the ledger's batching."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pdfchat.common.settings import CommonSettings, DatabaseSettings, NatsSettings, RedisSettings, ServiceAddresses


class OrchestratorSettings(CommonSettings, DatabaseSettings, NatsSettings, RedisSettings, ServiceAddresses):
    llm_base_url: str | None = None
    """OpenAI-compatible endpoint (`PDFCHAT_LLM_BASE_URL`, e.g. `https://api.openai.com/v1`). Unset: the
    extractive provider answers by quoting the retrieved passages."""
    llm_api_key: str = ""
    """Bearer key for the endpoint (`PDFCHAT_LLM_API_KEY`); local endpoints may need none."""
    llm_model: str = "gpt-4o-mini"
    """Model name sent to the endpoint (`PDFCHAT_LLM_MODEL`)."""
    llm_context_window: int = 128_000
    """Context window of the configured model, in tokens."""
    llm_quality_tier: str = "standard"
    """Quality tier reported by ListModels for routing decisions."""
    llm_input_price_per_mtok: float = 0.0
    """USD per million input tokens, for the cost in the usage ledger."""
    llm_output_price_per_mtok: float = 0.0
    """USD per million output tokens."""
    llm_request_timeout_seconds: float = 120.0
    """Upper bound of one whole LLM call; the caller's remaining gRPC deadline bounds it further."""
    llm_first_token_timeout_seconds: float = 20.0
    """How long to wait for the first token before falling back to the extractive provider."""

    ledger_flush_interval_seconds: float = 1.0
    """How often buffered usage events are written to Postgres."""
    ledger_batch_size: int = 500
    """Events per INSERT batch; a full batch is written without waiting for the interval."""
    ledger_max_pending: int = 50_000
    """Events buffered while Postgres is unreachable before the oldest are dropped (and logged)."""

    cache_enabled: bool = True
    """Exact response cache in Redis (keyed by tenant, model family, decoding parameters, prompt template
    and the passages' segment ids and document versions), with single-flight for identical requests."""
    cache_ttl_seconds: float = 86_400.0
    """How long a cached answer is kept; document events drop it sooner when a cited document changes."""
    cache_wait_seconds: float = 60.0
    """How long a request waits for an identical one in flight before calling upstream itself."""
    cache_lock_seconds: float = 150.0
    """Expiry of the single-flight lock, should the replica holding it die."""

    budget_monthly_usd: float | None = None
    """Default monthly LLM budget per tenant in USD; unset: unlimited."""
    budget_tenant_monthly_usd: dict[str, float] = Field(default={})
    """Budgets of named tenants, as JSON: `{"acme": 50, "trial-1": 1.5}`; they override the default."""
    budget_policy: Literal["downgrade", "refuse"] = "downgrade"
    """What happens once a tenant's budget is spent: a cheaper model, or RESOURCE_EXHAUSTED."""
    budget_downgrade_model: str = "extractive"
    """The model a tenant over budget is downgraded to (the free extractive provider by default)."""
    budget_refresh_seconds: float = 5.0
    """How often a replica re-reads a tenant's spend from the ledger."""

    @model_validator(mode="after")
    def _check_llm(self) -> OrchestratorSettings:
        if self.llm_base_url is not None and not self.llm_base_url.startswith(("http://", "https://")):
            raise ValueError("PDFCHAT_LLM_BASE_URL must be an http(s) URL such as https://api.openai.com/v1")
        if self.llm_first_token_timeout_seconds <= 0 or self.llm_request_timeout_seconds <= 0:
            raise ValueError("PDFCHAT_LLM_*_TIMEOUT_SECONDS must be positive")
        return self

    @property
    def llm_configured(self) -> bool:
        return bool(self.llm_base_url)
