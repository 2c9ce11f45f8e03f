"""Orchestrator settings: the shared sections plus the LLM endpoint, its prices and the ledger's batching."""

from __future__ import annotations

from pathlib import Path
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
    llm_config: Path | None = None
    """YAML file of providers, models, prices, limits, routing and fallback chains (format in
    docs/orchestrator.md). When set it replaces the single endpoint of `PDFCHAT_LLM_BASE_URL`; it is re-read
    when it changes and on SIGHUP."""
    llm_config_reload_seconds: float = 2.0
    """How often the YAML file's modification time is checked."""
    llm_estimated_output_tokens: int = 256
    """Output tokens reserved against TPM for a request without max_tokens, until its actual usage settles."""
    llm_min_call_seconds: float = 0.5
    """The shortest plausible LLM call: no wait or attempt starts unless this much of the deadline is left."""

    limiter_key_prefix: str = ""
    """Redis key prefix of limits, cooldowns, breakers and learned limits; replicas sharing limits share
    it. Empty: `<PDFCHAT_JOBS_NAMESPACE>:orch`."""
    limiter_max_waiters: int = 2000
    """Callers one replica lets wait for capacity; beyond it they get RESOURCE_EXHAUSTED at once."""
    limiter_lease_seconds: float = 300.0
    """Expiry of a concurrency slot, should the replica holding it die mid-call."""
    limiter_max_wait_seconds: float = 600.0
    """Longest wait for capacity, even with a longer (or no) deadline."""
    limiter_discovery_concurrency: int = 2
    """Calls in flight to a model with no configured limits before its first answer teaches them."""

    retry_max_attempts: int = 3
    """Attempts per model before falling back, the first included."""
    retry_base_seconds: float = 0.25
    """Full-jitter backoff: the wait before retry n is uniform in [0, min(cap, base * 2**n)]."""
    retry_cap_seconds: float = 8.0
    """Upper bound of one backoff."""
    retry_max_wait_seconds: float = 20.0
    """A longer required wait (a long Retry-After) falls over to the next model instead of waiting."""
    retry_budget_ratio: float = 0.2
    """Retries per provider allowed as a fraction of first attempts over 10 s, across replicas."""
    retry_budget_min: int = 10
    """Retries per provider allowed per 10 s regardless of traffic."""

    breaker_failure_threshold: int = 5
    """Consecutive failures (5xx, timeouts, cut streams) that open a model's circuit."""
    breaker_failure_window_seconds: float = 30.0
    """Failures further apart than this do not add up."""
    breaker_open_seconds: float = 15.0
    """How long an open circuit refuses calls before one half-open probe is let through."""
    breaker_probe_seconds: float = 30.0
    """How long a half-open probe may take before another caller may probe."""

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
        if self.llm_config is not None and not self.llm_config.is_file():
            raise ValueError(f"PDFCHAT_LLM_CONFIG names {self.llm_config}, which is not a file")
        return self

    @property
    def limiter_prefix(self) -> str:
        return self.limiter_key_prefix or f"{self.jobs_namespace}:orch"

    @property
    def llm_configured(self) -> bool:
        return bool(self.llm_base_url)
