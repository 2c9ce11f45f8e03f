"""Orchestrator fixtures: an in-process LLM simulator and orchestrator processes with and without it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pdfchat.orchestrator import config, providers
from pdfchat.orchestrator.providers import ExtractiveProvider
from pdfchat.orchestrator.router import Router, RouterControls
from pdfchat_tools import devstack
from pdfchat_tools.llm_sim import SimServer

RouterOnSim = Callable[..., Router]


@pytest.fixture(scope="session")
def llm_sim() -> Iterator[SimServer]:
    with SimServer() as server:
        yield server


@pytest.fixture
def sim(llm_sim: SimServer) -> SimServer:
    """The shared simulator with default settings, no pending faults and zeroed counters."""
    llm_sim.reset(config=True)
    return llm_sim


@pytest.fixture
def router_on_sim(sim: SimServer) -> RouterOnSim:
    """Builds a Router whose one LLM is the simulator's `sim-model`, with the given controls and prices."""

    def build(controls: RouterControls, *, input_price: float = 0.0, output_price: float = 0.0) -> Router:
        router = Router(extractive=ExtractiveProvider(), first_token_timeout_seconds=5, controls=controls)
        llm = config.single_endpoint(
            base_url=sim.openai_base_url,
            api_key="",
            model="sim-model",
            context_window=8000,
            quality_tier="standard",
            input_price_per_mtok=input_price,
            output_price_per_mtok=output_price,
            request_timeout_seconds=10,
        )
        router.apply(llm, providers.build(llm, router.observe_headers))
        return router

    return build


@pytest.fixture(scope="session")
def orchestrator_with_llm(stack_factory: Callable[..., devstack.Stack], llm_sim: SimServer) -> str:
    stack = stack_factory(
        ("orchestrator",),
        extra_env={
            "PDFCHAT_LLM_BASE_URL": llm_sim.openai_base_url,
            "PDFCHAT_LLM_MODEL": "sim-model",
            "PDFCHAT_LLM_INPUT_PRICE_PER_MTOK": "1.0",
            "PDFCHAT_LLM_OUTPUT_PRICE_PER_MTOK": "4.0",
            "PDFCHAT_LLM_FIRST_TOKEN_TIMEOUT_SECONDS": "2",
            # Tests here inject faults one after another; the breaker has its own tests (test_breaker.py).
            "PDFCHAT_BREAKER_FAILURE_THRESHOLD": "1000",
        },
    )
    return stack.config.env["PDFCHAT_ORCHESTRATOR_ADDR"]


@pytest.fixture(scope="session")
def orchestrator_without_llm(stack_factory: Callable[..., devstack.Stack]) -> str:
    stack = stack_factory(("orchestrator",))
    return stack.config.env["PDFCHAT_ORCHESTRATOR_ADDR"]
