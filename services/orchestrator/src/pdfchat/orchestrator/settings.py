"""Orchestrator settings: the shared sections plus the LLM endpoint, its prices and the ledger's batching."""

from __future__ import annotations

from pydantic import model_validator

from pdfchat.common.settings import CommonSettings, DatabaseSettings, RedisSettings, ServiceAddresses


class OrchestratorSettings(CommonSettings, DatabaseSettings, RedisSettings, ServiceAddresses):
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
