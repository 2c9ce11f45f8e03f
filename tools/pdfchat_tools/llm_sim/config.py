"""The simulator's knobs: latency, provider limits and injected faults.

One `SimConfig` governs a running simulator. It can be set from the command line at start-up and
changed while running through `POST /_sim/config` (a partial JSON object: only the named fields
change), so a test can turn on faults or limits for one scenario and reset them afterwards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal["500", "503", "429", "timeout", "cut"]
FAULT_KINDS: tuple[FaultKind, ...] = ("500", "503", "429", "timeout", "cut")


@dataclass
class SimConfig:
    """Behaviour of the simulated provider. Every field has a harmless default: no latency, no limits."""

    models: list[str] = field(default_factory=lambda: ["sim-model", "sim-embedding"])
    """Model ids listed by GET /v1/models. Requests for other model ids are served too."""
    api_key: str | None = None
    """When set, requests must carry `Authorization: Bearer <api_key>` or get 401."""

    time_to_first_token_seconds: float = 0.0
    """Delay before the first content token (and before a non-streaming answer's body)."""
    inter_token_seconds: float = 0.0
    """Delay between streamed tokens (a non-streaming answer waits this per token too)."""
    completion_tokens: int | None = None
    """When set, every answer is padded or truncated to exactly this many tokens."""
    fixed_answer: str | None = None
    """When set, every chat completion answers this text instead of one built from the prompt."""

    rpm_limit: int | None = None
    """Requests per minute (sliding 60 s window) before answering 429; None: unlimited."""
    tpm_limit: int | None = None
    """Tokens per minute (prompt + max_tokens or the answer length) before answering 429; None: unlimited."""

    error_500_rate: float = 0.0
    """Fraction of requests answered 500 before any token."""
    error_503_rate: float = 0.0
    """Fraction of requests answered 503 before any token."""
    timeout_rate: float = 0.0
    """Fraction of requests that hang `timeout_seconds` before answering (a client should give up first)."""
    cut_rate: float = 0.0
    """Fraction of streams whose connection is dropped after `cut_after_tokens` tokens."""
    timeout_seconds: float = 300.0
    cut_after_tokens: int = 3
    next_faults: list[FaultKind] = field(default_factory=list)
    """Faults served, in order, to the next chat completion requests before the rates apply."""
    seed: int = 0
    """Seed of the fault dice, so a run with fault rates is reproducible."""

    embedding_dimensions: int = 384

    def updated(self, changes: dict[str, Any]) -> SimConfig:
        """A copy with `changes` applied; unknown fields or bad fault kinds raise ValueError."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        faults = changes.get("next_faults", [])
        bad = [kind for kind in faults if kind not in FAULT_KINDS]
        if bad:
            raise ValueError(f"unknown fault kinds {bad}; known: {list(FAULT_KINDS)}")
        merged = {**dataclasses.asdict(self), **changes}
        return SimConfig(**merged)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
