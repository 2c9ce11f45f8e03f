"""Provider configuration: which OpenAI-compatible endpoints serve which models, at what price and limits.

Two sources, one shape (`LLMConfig`):

- a YAML file named by `PDFCHAT_LLM_CONFIG` (format in docs/orchestrator.md). Secrets never sit in the
  file: a provider names the environment variable that holds its key (`api_key_env`);
- with no file, the single endpoint of `PDFCHAT_LLM_BASE_URL` / `_API_KEY` / `_MODEL`, with no limits
  configured, so they are learned from the provider's answers (see `learned`).

Limits left out (`rpm`, `tpm`, `max_concurrency` unset) mean "not known", not "unlimited": the limiter
then uses what it learned from `x-ratelimit-*` headers and 429s. `ConfigWatcher` re-reads the file when
its modification time changes or on SIGHUP; a file that no longer parses keeps the previous
configuration running (and says why in the log), because a typo must not take the service down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pdfchat.orchestrator.generation import ModelSpec

log = logging.getLogger(__name__)

STRATEGIES = ("cost", "latency", "quality")
ERROR_CLASSES = ("rate_limited", "unavailable", "timeout", "rejected", "cut", "breaker_open", "capacity")
"""Error classes a fallback chain can name (see `router.error_class`)."""
DEFAULT_TIERS = ("economy", "standard", "premium")


class ConfigError(ValueError):
    """The configuration file is not valid; the message names the offending entry."""


@dataclass(frozen=True)
class ScopeLimits:
    """Limits of one scope; None means not configured (learned where possible, otherwise unlimited)."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None


@dataclass(frozen=True)
class ModelConfig:
    spec: ModelSpec
    limits: ScopeLimits = ScopeLimits()
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Error class -> models to try next, in order (the extractive provider always comes last)."""


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    base_url: str
    api_key: str = ""
    request_timeout_seconds: float = 120.0
    models: tuple[ModelConfig, ...] = ()


@dataclass(frozen=True)
class PriorityPolicy:
    """How one priority class is routed: the ordering strategy and the lowest acceptable quality tier."""

    strategy: str = "cost"
    min_tier: str = ""


@dataclass(frozen=True)
class LLMConfig:
    providers: tuple[ProviderConfig, ...] = ()
    tiers: tuple[str, ...] = DEFAULT_TIERS
    """Quality tiers from lowest to highest."""
    interactive: PriorityPolicy = PriorityPolicy(strategy="latency")
    batch: PriorityPolicy = PriorityPolicy(strategy="cost")
    interactive_reserve: float = 0.2
    """Fraction of every model's and the global capacity that batch traffic may not use."""
    global_limits: ScopeLimits = ScopeLimits()
    tenant_limits: ScopeLimits = ScopeLimits()
    """Applied to each tenant separately."""
    source: str = "env"

    def models(self) -> list[ModelConfig]:
        return [model for provider in self.providers for model in provider.models]

    def tier_rank(self, tier: str) -> int:
        """Position of `tier` among the tiers (unknown tiers rank lowest)."""
        return self.tiers.index(tier) if tier in self.tiers else -1


def single_endpoint(
    *,
    base_url: str | None,
    api_key: str,
    model: str,
    context_window: int,
    quality_tier: str,
    input_price_per_mtok: float,
    output_price_per_mtok: float,
    request_timeout_seconds: float,
) -> LLMConfig:
    """The configuration of `PDFCHAT_LLM_BASE_URL` alone (no providers when it is unset): limits unknown."""
    if not base_url:
        return LLMConfig(source="env")
    host = urlsplit(base_url).hostname or "llm"
    spec = ModelSpec(
        name=model,
        provider=host,
        context_window=context_window,
        quality_tier=quality_tier,
        input_price_per_mtok=input_price_per_mtok,
        output_price_per_mtok=output_price_per_mtok,
    )
    provider = ProviderConfig(
        name=host,
        base_url=base_url,
        api_key=api_key,
        request_timeout_seconds=request_timeout_seconds,
        models=(ModelConfig(spec),),
    )
    return LLMConfig(providers=(provider,), source="env")


def load(path: Path, environ: Mapping[str, str] | None = None) -> LLMConfig:
    """Parses the YAML file at `path`; raises ConfigError with the offending entry named."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse(document, environ if environ is not None else os.environ, source=str(path))


def parse(document: Any, environ: Mapping[str, str], source: str = "yaml") -> LLMConfig:
    if not isinstance(document, dict):
        raise ConfigError("the configuration must be a mapping with a `providers` list")
    tiers = tuple(str(t) for t in document.get("tiers", DEFAULT_TIERS))
    providers = tuple(_provider(p, i, environ, tiers) for i, p in enumerate(_list(document, "providers")))
    names = [m.spec.name for p in providers for m in p.models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"model names must be unique across providers: {duplicates}")
    for provider in providers:
        for model in provider.models:
            for error_class, chain in model.fallbacks.items():
                unknown = [n for n in chain if n not in names and n != "extractive"]
                if unknown:
                    raise ConfigError(f"model {model.spec.name}: fallbacks.{error_class} names unknown {unknown}")
    routing = document.get("routing") or {}
    reserve = float(routing.get("interactive_reserve", 0.2))
    if not 0 <= reserve < 1:
        raise ConfigError("routing.interactive_reserve must be in [0, 1)")
    limits = document.get("limits") or {}
    return LLMConfig(
        providers=providers,
        tiers=tiers,
        interactive=_policy(routing.get("interactive"), "latency", tiers),
        batch=_policy(routing.get("batch"), "cost", tiers),
        interactive_reserve=reserve,
        global_limits=_limits(limits.get("global"), "limits.global"),
        tenant_limits=_limits(limits.get("tenant"), "limits.tenant"),
        source=source,
    )


def _list(document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key) or []
    if not isinstance(value, list):
        raise ConfigError(f"`{key}` must be a list")
    return value


def _provider(raw: Any, index: int, environ: Mapping[str, str], tiers: Sequence[str]) -> ProviderConfig:
    if not isinstance(raw, dict) or not raw.get("name") or not raw.get("base_url"):
        raise ConfigError(f"providers[{index}] needs `name` and `base_url`")
    name = str(raw["name"])
    base_url = str(raw["base_url"])
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"provider {name}: base_url must be an http(s) URL")
    api_key = ""
    if key_env := raw.get("api_key_env"):
        if str(key_env) not in environ:
            raise ConfigError(f"provider {name}: environment variable {key_env} (api_key_env) is not set")
        api_key = environ[str(key_env)]
    models = tuple(_model(m, name, tiers) for m in _list(raw, "models"))
    if not models:
        raise ConfigError(f"provider {name}: `models` is empty")
    return ProviderConfig(
        name=name,
        base_url=base_url,
        api_key=api_key,
        request_timeout_seconds=float(raw.get("request_timeout_seconds", 120.0)),
        models=models,
    )


def _model(raw: Any, provider: str, tiers: Sequence[str]) -> ModelConfig:
    if not isinstance(raw, dict) or not raw.get("name"):
        raise ConfigError(f"provider {provider}: every model needs a `name`")
    name = str(raw["name"])
    tier = str(raw.get("quality_tier", "standard"))
    if tier not in tiers:
        raise ConfigError(f"model {name}: quality_tier {tier!r} is not one of {list(tiers)}")
    fallbacks = raw.get("fallbacks") or {}
    if not isinstance(fallbacks, dict):
        raise ConfigError(f"model {name}: `fallbacks` maps an error class to a list of models")
    unknown_classes = sorted(set(fallbacks) - set(ERROR_CLASSES))
    if unknown_classes:
        raise ConfigError(f"model {name}: unknown error classes {unknown_classes}; known: {list(ERROR_CLASSES)}")
    spec = ModelSpec(
        name=name,
        provider=provider,
        context_window=int(raw.get("context_window", 0)),
        quality_tier=tier,
        input_price_per_mtok=float(raw.get("input_price_per_mtok", 0.0)),
        output_price_per_mtok=float(raw.get("output_price_per_mtok", 0.0)),
    )
    return ModelConfig(
        spec=spec,
        limits=_limits(raw, f"model {name}"),
        fallbacks={str(k): tuple(str(m) for m in (v or ())) for k, v in fallbacks.items()},
    )


def _limits(raw: Any, where: str) -> ScopeLimits:
    if raw is None:
        return ScopeLimits()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: limits must be a mapping")

    def positive(key: str) -> int | None:
        value = raw.get(key)
        if value is None:
            return None
        if int(value) <= 0:
            raise ConfigError(f"{where}: {key} must be positive (leave it out when unknown)")
        return int(value)

    return ScopeLimits(rpm=positive("rpm"), tpm=positive("tpm"), max_concurrency=positive("max_concurrency"))


def _policy(raw: Any, default_strategy: str, tiers: Sequence[str]) -> PriorityPolicy:
    raw = raw or {}
    strategy = str(raw.get("strategy", default_strategy))
    if strategy not in STRATEGIES:
        raise ConfigError(f"routing strategy {strategy!r} is not one of {list(STRATEGIES)}")
    min_tier = str(raw.get("min_tier", ""))
    if min_tier and min_tier not in tiers:
        raise ConfigError(f"routing min_tier {min_tier!r} is not one of {list(tiers)}")
    return PriorityPolicy(strategy=strategy, min_tier=min_tier)


class ConfigWatcher:
    """Keeps the configuration of a file current: re-reads it when its mtime changes or on SIGHUP.

    `on_change` receives each new valid configuration; an invalid file is logged and skipped.
    """

    def __init__(
        self,
        path: Path,
        on_change: Callable[[LLMConfig], None],
        *,
        interval_seconds: float = 2.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self._on_change = on_change
        self._interval = interval_seconds
        self._environ = environ
        self._mtime = self._stat()
        self._hangup = asyncio.Event()
        self.reloads = 0

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns / 1e9
        except OSError:
            return None

    def reload(self) -> bool:
        """Reads the file now; True when a new configuration was applied."""
        self._mtime = self._stat()
        try:
            config = load(self.path, self._environ)
        except ConfigError as exc:
            log.error("keeping the previous LLM configuration: %s", exc)
            return False
        self._on_change(config)
        self.reloads += 1
        log.info("LLM configuration reloaded from %s (%d providers)", self.path, len(config.providers))
        return True

    def check(self) -> bool:
        """Reloads when the file's modification time changed since the last read."""
        if self._stat() != self._mtime:
            return self.reload()
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Background task: polls the mtime every interval and reloads at once on SIGHUP."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self._hangup.set)
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_either(stop, self._hangup), timeout=self._interval)
                if self._hangup.is_set():
                    self._hangup.clear()
                    self.reload()
                else:
                    self.check()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)


async def _either(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
