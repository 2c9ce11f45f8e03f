"""Orchestrator fixtures: an in-process LLM simulator and orchestrator processes with and without it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pdfchat_tools import devstack
from pdfchat_tools.llm_sim import SimServer


@pytest.fixture(scope="session")
def llm_sim() -> Iterator[SimServer]:
    with SimServer() as server:
        yield server


@pytest.fixture
def sim(llm_sim: SimServer) -> SimServer:
    """The shared simulator with default settings, no pending faults and zeroed counters."""
    llm_sim.reset(config=True)
    return llm_sim


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
