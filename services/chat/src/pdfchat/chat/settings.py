"""Settings of the chat service (flat `PDFCHAT_*` variables, see pdfchat.common.settings)."""

from __future__ import annotations

from pydantic import Field, model_validator

from pdfchat.common.settings import CommonSettings, DatabaseSettings, RedisSettings, ServiceAddresses

# The orchestrator may hold an interactive request this long while it waits for provider capacity.
MIN_LLM_QUEUE_WAIT_SECONDS = 60.0


class ChatSettings(CommonSettings, DatabaseSettings, RedisSettings, ServiceAddresses):
    top_k: int = Field(default=8, ge=1, le=50)
    """Passages given to the model (and shown as citations) per question."""
    retrieval_candidates: int = Field(default=24, ge=1, le=200)
    """Hits asked from vector_index before duplicates are dropped and the best `top_k` kept."""
    max_question_chars: int = Field(default=4000, ge=1)
    """Longer questions are refused with INVALID_ARGUMENT."""
    max_title_chars: int = Field(default=200, ge=1)
    """Longest session title accepted."""
    max_documents_per_session: int = Field(default=100, ge=1)
    """Most documents one session may search."""
    retrieval_timeout_seconds: float = Field(default=15.0, gt=0)
    """Deadline of the embedding and search calls of one question."""
    answer_deadline_seconds: float = 120.0
    """Whole answer, retrieval to end. Must leave room for the orchestrator's wait for LLM capacity."""
    answer_temperature: float = Field(default=0.1, ge=0.0, le=2.0)
    """Sampling temperature asked of the LLM for answers: low, because answers quote the documents."""
    answer_max_tokens: int = Field(default=0, ge=0)
    """0 lets the orchestrator choose."""
    replay_ttl_seconds: int = Field(default=3600, ge=60)
    """How long a message's events stay in Redis for ResumeMessage."""
    resume_idle_timeout_seconds: float = Field(default=120.0, gt=0)
    """A resumed stream that sees no new event for this long ends with UNAVAILABLE (its producer died)."""

    @model_validator(mode="after")
    def _answer_deadline_allows_queueing(self) -> ChatSettings:
        needed = MIN_LLM_QUEUE_WAIT_SECONDS + self.retrieval_timeout_seconds
        if self.answer_deadline_seconds < needed:
            raise ValueError(
                f"PDFCHAT_ANSWER_DEADLINE_SECONDS={self.answer_deadline_seconds:g} is too short: an answer may wait "
                f"{MIN_LLM_QUEUE_WAIT_SECONDS:g} s for LLM capacity after up to {self.retrieval_timeout_seconds:g} s "
                f"of retrieval; set it to at least {needed:g}"
            )
        return self
