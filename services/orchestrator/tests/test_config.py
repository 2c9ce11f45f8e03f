"""Provider configuration from YAML: parsing, secrets from the environment, and reload without restart."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from pdfchat.orchestrator import config
from pdfchat.orchestrator.config import ConfigError, ConfigWatcher, LLMConfig, ScopeLimits

EXAMPLE = """
tiers: [economy, standard, premium]
routing:
  interactive: {strategy: latency, min_tier: standard}
  batch: {strategy: cost}
  interactive_reserve: 0.25
limits:
  global: {rpm: 5000}
  tenant: {tpm: 200000, max_concurrency: 20}
providers:
  - name: main
    base_url: https://llm.example/v1
    api_key_env: TEST_MAIN_KEY
    models:
      - name: big
        context_window: 128000
        input_price_per_mtok: 2.5
        output_price_per_mtok: 10
        rpm: 600
        tpm: 100000
        max_concurrency: 50
        quality_tier: premium
        fallbacks: {rate_limited: [small], rejected: []}
      - name: small
        context_window: 16000
        quality_tier: economy
  - name: local
    base_url: http://127.0.0.1:8900/v1
    models:
      - {name: local-model, quality_tier: standard}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_gives_providers_models_limits_routing_and_secrets_from_env(tmp_path: Path) -> None:
    loaded = config.load(write(tmp_path / "llm.yaml", EXAMPLE), environ={"TEST_MAIN_KEY": "sk-test"})
    main, local = loaded.providers
    assert (main.name, main.base_url, main.api_key) == ("main", "https://llm.example/v1", "sk-test")
    assert local.api_key == ""
    big, small = main.models
    assert big.spec.context_window == 128_000
    assert (big.spec.input_price_per_mtok, big.spec.output_price_per_mtok) == (2.5, 10)
    assert big.limits == ScopeLimits(rpm=600, tpm=100_000, max_concurrency=50)
    assert small.limits == ScopeLimits()  # not configured: learned from the provider
    assert big.fallbacks == {"rate_limited": ("small",), "rejected": ()}
    assert (loaded.interactive.strategy, loaded.interactive.min_tier, loaded.batch.strategy) == (
        "latency",
        "standard",
        "cost",
    )
    assert loaded.interactive_reserve == 0.25
    assert loaded.global_limits.rpm == 5000
    assert loaded.tenant_limits == ScopeLimits(tpm=200_000, max_concurrency=20)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("api_key_env: TEST_MAIN_KEY", "api_key_env: TEST_MISSING_KEY"), "TEST_MISSING_KEY"),
        (("rate_limited: [small]", "rate_limited: [nope]"), "unknown"),
        (("rate_limited:", "angry:"), "unknown error classes"),
        (("quality_tier: economy", "quality_tier: mythic"), "quality_tier"),
        (("rpm: 600", "rpm: 0"), "positive"),
        (("strategy: cost", "strategy: vibes"), "strategy"),
    ],
)
def test_invalid_configuration_names_the_problem(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(write(tmp_path / "llm.yaml", EXAMPLE.replace(*edit)), environ={"TEST_MAIN_KEY": "k"})


def test_single_endpoint_from_env_has_no_limits_configured() -> None:
    single = config.single_endpoint(
        base_url="http://127.0.0.1:9/v1",
        api_key="k",
        model="m",
        context_window=1000,
        quality_tier="standard",
        input_price_per_mtok=1,
        output_price_per_mtok=2,
        request_timeout_seconds=5,
    )
    (provider,) = single.providers
    assert (provider.name, provider.api_key, provider.models[0].limits) == ("127.0.0.1", "k", ScopeLimits())
    assert (
        config.single_endpoint(
            base_url=None,
            api_key="",
            model="m",
            context_window=0,
            quality_tier="",
            input_price_per_mtok=0,
            output_price_per_mtok=0,
            request_timeout_seconds=5,
        ).providers
        == ()
    )


async def test_watcher_reloads_on_change_and_on_sighup_and_keeps_the_last_good_config(tmp_path: Path) -> None:
    path = write(tmp_path / "llm.yaml", EXAMPLE)
    environ = {"TEST_MAIN_KEY": "k"}
    applied: list[LLMConfig] = []
    watcher = ConfigWatcher(path, applied.append, interval_seconds=0.05, environ=environ)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        await asyncio.sleep(0.1)
        assert applied == []  # unchanged file: nothing to apply
        write(path, EXAMPLE.replace("rpm: 600", "rpm: 300"))
        os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
        await _until(lambda: len(applied) == 1)
        assert applied[-1].providers[0].models[0].limits.rpm == 300

        write(path, "providers: [oops")  # broken: the running config stays
        os.utime(path, ns=(path.stat().st_mtime_ns + 2 * 10**9,) * 2)
        await asyncio.sleep(0.3)
        assert len(applied) == 1

        write(path, EXAMPLE.replace("rpm: 600", "rpm: 100"))
        watcher._mtime = watcher._stat()  # as if the change went unnoticed: only the signal reloads now
        os.kill(os.getpid(), signal.SIGHUP)
        await _until(lambda: len(applied) == 2)
        assert applied[-1].providers[0].models[0].limits.rpm == 100
    finally:
        stop.set()
        await task


async def _until(condition: object, within: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
