"""A real orchestrator process configured from YAML: the `queued` event, and reloading the file while running."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from pdfchat.common.identity import Identity
from pdfchat.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from pdfchat_tools import devstack
from pdfchat_tools.llm_sim import SimServer

pytestmark = pytest.mark.integration

SPEC = orchestrator_pb2.GenerationSpec(
    question="When was the tower finished?",
    passages=[orchestrator_pb2.ContextPassage(segment_id="s1", document_id="d1", page=7, text="It was 1889.")],
)

YAML = """
providers:
  - name: sim
    base_url: {base_url}
    models:
      - name: sim-model
        context_window: 8000
        rpm: 1000
        tpm: 1000000
        max_concurrency: 1
{extra}
"""


@pytest.fixture(scope="module")
def configured(
    stack_factory: Callable[..., devstack.Stack], llm_sim: SimServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp("llm") / "llm.yaml"
    path.write_text(YAML.format(base_url=llm_sim.openai_base_url, extra=""), encoding="utf-8")
    stack = stack_factory(
        ("orchestrator",),
        extra_env={
            "PDFCHAT_LLM_CONFIG": str(path),
            "PDFCHAT_LLM_CONFIG_RELOAD_SECONDS": "0.2",
            "PDFCHAT_CACHE_ENABLED": "false",
        },
    )
    return stack.config.env["PDFCHAT_ORCHESTRATOR_ADDR"], path


def metadata() -> tuple[tuple[str, str], ...]:
    return Identity(tenant_id=f"t-{uuid.uuid4().hex[:8]}").to_metadata()


async def test_a_caller_waiting_for_capacity_gets_a_queued_event_before_its_tokens(
    configured: tuple[str, Path], sim: SimServer
) -> None:
    address, _ = configured
    sim.configure(time_to_first_token_seconds=1.0)
    async with grpc.aio.insecure_channel(address) as channel:
        client = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)

        async def ask() -> list[orchestrator_pb2.GenerateStreamResponse]:
            call = client.GenerateStream(
                orchestrator_pb2.GenerateStreamRequest(spec=SPEC), metadata=metadata(), timeout=20
            )
            return [response async for response in call]

        first, second = await asyncio.gather(ask(), ask())
    kinds = [[r.WhichOneof("event") for r in responses] for responses in (first, second)]
    queued = [k for k in kinds if k[0] == "queued"]
    assert len(queued) == 1, kinds
    assert queued[0][1] == "delta"
    assert queued[0][-1] == "end"
    notice = (first if kinds[0][0] == "queued" else second)[0]
    assert notice.queued.expected_wait_seconds > 0
    assert all(r[-1].end.provider == "sim" for r in (first, second))
    assert sim.stats()["max_in_flight"] == 1


async def test_the_configuration_file_is_reloaded_without_restart(configured: tuple[str, Path], sim: SimServer) -> None:
    address, path = configured
    extra = "      - {name: sim-large, context_window: 32000, quality_tier: premium}"
    path.write_text(YAML.format(base_url=sim.openai_base_url, extra=extra), encoding="utf-8")
    async with grpc.aio.insecure_channel(address) as channel:
        client = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        for _ in range(50):
            reply = await client.ListModels(orchestrator_pb2.ListModelsRequest(), metadata=metadata(), timeout=5)
            if "sim-large" in [m.name for m in reply.models]:
                break
            await asyncio.sleep(0.1)
    assert [(m.name, m.quality_tier) for m in reply.models] == [
        ("sim-model", "standard"),
        ("sim-large", "premium"),
        ("extractive", "extractive"),
    ]
