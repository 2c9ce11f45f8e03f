"""The response cache: its key (unit), its Redis behaviour (real Redis), and through a real orchestrator
process against the LLM simulator: hits, misses, errors and cut streams never cached, single-flight, and
invalidation by a document event on NATS."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable

import grpc
import nats
import pytest
from redis.asyncio import Redis

from pdfchat.common.events import DocumentChanged
from pdfchat.common.identity import Identity
from pdfchat.common.jetstream import JobQueues
from pdfchat.orchestrator.cache import CachedAnswer, ResponseCache, cache_key, model_family
from pdfchat.orchestrator.generation import ChatTurn, GenerationRequest, Passage
from pdfchat.orchestrator.server import to_request
from pdfchat.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from pdfchat_tools import devstack
from pdfchat_tools.llm_sim import SimServer

BASE = GenerationRequest(
    question="When was the tower finished?",
    passages=(
        Passage(text="The tower was finished in 1889.", page=7, document_id="d1", segment_id="s1", version=2),
        Passage(text="Bridges cross the river.", page=8, document_id="d2", segment_id="s9", version=1),
    ),
    model="sim-model",
    temperature=0.2,
    max_tokens=200,
    prompt_template_id="qa",
    prompt_template_version=3,
)


# --- the key -----------------------------------------------------------------------------------------


def test_identical_requests_share_a_key_and_whitespace_does_not_matter() -> None:
    spaced = dataclasses.replace(BASE, question="  When was the   tower finished? ")
    assert cache_key("t1", BASE) == cache_key("t1", spaced)
    assert cache_key("t1", BASE).documents == ("d1", "d2")


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.3},
        {"max_tokens": 201},
        {"prompt_template_id": "qa2"},
        {"prompt_template_version": 4},
        {"question": "When was the bridge finished?"},
        {"messages": (ChatTurn("user", "hello"),)},
        {"passages": (dataclasses.replace(BASE.passages[0], segment_id="s2"), BASE.passages[1])},
        {"passages": (dataclasses.replace(BASE.passages[0], version=3), BASE.passages[1])},
        {"passages": (BASE.passages[1], BASE.passages[0])},
        {"model": "other-model"},
    ],
)
def test_any_difference_in_parameters_passages_or_versions_changes_the_key(change: dict[str, object]) -> None:
    assert cache_key("t1", BASE).digest != cache_key("t1", dataclasses.replace(BASE, **change)).digest  # type: ignore[arg-type]


def test_tenants_never_share_entries() -> None:
    assert cache_key("t1", BASE) != cache_key("t2", BASE)


def test_model_family_ignores_dated_snapshots() -> None:
    assert model_family("gpt-4o-2024-08-06") == model_family("gpt-4o") == "gpt-4o"
    assert model_family("") == "auto"


# --- real Redis ---------------------------------------------------------------------------------------

ANSWER = CachedAnswer(
    pieces=("The tower ", "was finished in 1889. [1]"),
    finish_reason="stop",
    input_tokens=40,
    output_tokens=9,
    model="sim-model",
    provider="sim",
)


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[ResponseCache]:
    client = Redis.from_url(redis_url)
    yield ResponseCache(client, namespace=f"test-{uuid.uuid4().hex[:8]}", wait_seconds=2.0, poll_seconds=0.01)
    await client.aclose()


@pytest.mark.integration
async def test_a_stored_answer_is_found_and_a_second_caller_waits_for_the_leader(cache: ResponseCache) -> None:
    key = cache_key("t1", BASE)
    first = await cache.lookup(key)
    assert first.hit is None
    assert first.lease is not None

    async def leader() -> None:
        await asyncio.sleep(0.2)
        assert first.lease is not None
        await cache.store(first.lease, ANSWER)
        await cache.release(first.lease)

    follower, _ = await asyncio.gather(cache.lookup(key), leader())
    assert follower.hit == ANSWER
    assert follower.waited_seconds >= 0.15
    assert (await cache.get(key)) == ANSWER


@pytest.mark.integration
async def test_a_waiter_takes_over_when_the_leader_gives_up(cache: ResponseCache) -> None:
    key = cache_key("t1", BASE)
    first = await cache.lookup(key)
    assert first.lease is not None

    async def leader_fails() -> None:
        await asyncio.sleep(0.1)
        assert first.lease is not None
        await cache.release(first.lease)  # an error: nothing stored

    second, _ = await asyncio.gather(cache.lookup(key), leader_fails())
    assert second.hit is None
    assert second.lease is not None


@pytest.mark.integration
async def test_a_waiter_calls_upstream_itself_after_the_wait_limit(cache: ResponseCache) -> None:
    key = cache_key("t1", BASE)
    assert (await cache.lookup(key)).lease is not None
    started = time.monotonic()
    second = await cache.lookup(key)
    assert second.hit is None
    assert second.lease is None
    assert 1.9 <= time.monotonic() - started < 3.0


@pytest.mark.integration
async def test_invalidating_a_document_drops_only_the_entries_that_cite_it(cache: ResponseCache) -> None:
    cites_d1 = cache_key("t1", BASE)
    other = cache_key("t1", dataclasses.replace(BASE, passages=(BASE.passages[1],)))
    other_tenant = cache_key("t2", BASE)
    for key in (cites_d1, other, other_tenant):
        lookup = await cache.lookup(key)
        assert lookup.lease is not None
        await cache.store(lookup.lease, ANSWER)
        await cache.release(lookup.lease)
    assert await cache.invalidate_document("t1", "d1") == 1
    assert await cache.get(cites_d1) is None
    assert await cache.get(other) == ANSWER
    assert await cache.get(other_tenant) == ANSWER


# --- through a real orchestrator process --------------------------------------------------------------

SPEC = orchestrator_pb2.GenerationSpec(
    question="When was the tower finished?",
    model="sim-model",
    passages=[
        orchestrator_pb2.ContextPassage(
            segment_id="s1", document_id="d1", version=1, page=7, text="The tower was finished in 1889. It is tall."
        ),
        orchestrator_pb2.ContextPassage(
            segment_id="s2", document_id="d2", version=1, page=8, text="Bridges cross the river."
        ),
    ],
)


@dataclasses.dataclass(frozen=True)
class Orchestrator:
    address: str
    namespace: str


@pytest.fixture(scope="module")
def cached_orchestrator(stack_factory: Callable[..., devstack.Stack], llm_sim: SimServer) -> Orchestrator:
    stack = stack_factory(
        ("orchestrator",),
        extra_env={
            "PDFCHAT_LLM_BASE_URL": llm_sim.openai_base_url,
            "PDFCHAT_LLM_MODEL": "sim-model",
            "PDFCHAT_LLM_FIRST_TOKEN_TIMEOUT_SECONDS": "3",
        },
    )
    return Orchestrator(stack.config.env["PDFCHAT_ORCHESTRATOR_ADDR"], stack.config.env["PDFCHAT_JOBS_NAMESPACE"])


@pytest.fixture
def tenant_metadata() -> tuple[tuple[str, str], ...]:
    return Identity(tenant_id=f"t-{uuid.uuid4().hex[:8]}").to_metadata()


def tenant_of(metadata: tuple[tuple[str, str], ...]) -> str:
    return dict(metadata)["x-pdfchat-tenant"]


async def ask(
    address: str, metadata: tuple[tuple[str, str], ...], spec: orchestrator_pb2.GenerationSpec = SPEC
) -> list[orchestrator_pb2.GenerateStreamResponse]:
    async with grpc.aio.insecure_channel(address) as channel:
        client = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        call = client.GenerateStream(orchestrator_pb2.GenerateStreamRequest(spec=spec), metadata=metadata, timeout=30)
        return [response async for response in call]


def text_of(responses: list[orchestrator_pb2.GenerateStreamResponse]) -> str:
    return "".join(r.delta.text for r in responses if r.WhichOneof("event") == "delta")


def upstream_calls(sim: SimServer) -> int:
    return int(sim.stats()["counters"].get("chat_requests", 0))


@pytest.mark.integration
async def test_an_identical_request_is_replayed_from_the_cache_as_a_stream(
    cached_orchestrator: Orchestrator, sim: SimServer, tenant_metadata: tuple[tuple[str, str], ...]
) -> None:
    first = await ask(cached_orchestrator.address, tenant_metadata)
    second = await ask(cached_orchestrator.address, tenant_metadata)
    assert upstream_calls(sim) == 1
    assert text_of(second) == text_of(first) != ""
    assert [r.seq for r in second] == list(range(1, len(second) + 1))
    assert len(second) > 2  # replayed piece by piece, not as one blob
    assert (first[-1].end.cached, second[-1].end.cached) == (False, True)
    assert second[-1].end.usage.output_tokens == first[-1].end.usage.output_tokens
    assert second[-1].end.model == "sim-model"
    async with grpc.aio.insecure_channel(cached_orchestrator.address) as channel:
        client = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        unary = await client.Generate(orchestrator_pb2.GenerateRequest(spec=SPEC), metadata=tenant_metadata, timeout=10)
    assert unary.cached
    assert unary.text == text_of(first)
    assert upstream_calls(sim) == 1


@pytest.mark.integration
@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.7},
        {"max_tokens": 50},
        {"prompt_template_version": 2},
        {"passage_segment": "s1-other"},
        {"passage_version": 2},
    ],
)
async def test_a_request_that_differs_in_a_parameter_segment_or_version_misses(
    cached_orchestrator: Orchestrator,
    sim: SimServer,
    tenant_metadata: tuple[tuple[str, str], ...],
    change: dict[str, object],
) -> None:
    other = orchestrator_pb2.GenerationSpec()
    other.CopyFrom(SPEC)
    for name, value in change.items():
        if name == "passage_segment":
            other.passages[0].segment_id = str(value)
        elif name == "passage_version":
            other.passages[0].version = int(str(value))
        else:
            setattr(other, name, value)
    await ask(cached_orchestrator.address, tenant_metadata)
    responses = await ask(cached_orchestrator.address, tenant_metadata, other)
    assert upstream_calls(sim) == 2
    assert responses[-1].end.cached is False


@pytest.mark.integration
async def test_an_error_answered_by_the_fallback_is_not_cached(
    cached_orchestrator: Orchestrator, sim: SimServer, tenant_metadata: tuple[tuple[str, str], ...]
) -> None:
    sim.configure(error_500_rate=1.0)
    degraded = await ask(cached_orchestrator.address, tenant_metadata)
    assert degraded[-1].end.model == "extractive"  # the LLM failed; the extractive provider stood in
    sim.configure(error_500_rate=0.0)
    calls = upstream_calls(sim)
    healed = await ask(cached_orchestrator.address, tenant_metadata)
    assert upstream_calls(sim) == calls + 1
    assert (healed[-1].end.model, healed[-1].end.cached) == ("sim-model", False)


@pytest.mark.integration
async def test_a_cut_stream_is_not_cached(
    cached_orchestrator: Orchestrator, sim: SimServer, tenant_metadata: tuple[tuple[str, str], ...]
) -> None:
    sim.configure(next_faults=["cut"], cut_after_tokens=2)
    with pytest.raises(grpc.aio.AioRpcError) as cut:
        await ask(cached_orchestrator.address, tenant_metadata)
    assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
    responses = await ask(cached_orchestrator.address, tenant_metadata)
    assert upstream_calls(sim) == 2
    assert responses[-1].end.cached is False
    assert responses[-1].end.finish_reason == "stop"


@pytest.mark.integration
async def test_identical_concurrent_requests_share_one_upstream_call(
    cached_orchestrator: Orchestrator, sim: SimServer, tenant_metadata: tuple[tuple[str, str], ...]
) -> None:
    sim.configure(time_to_first_token_seconds=0.5, inter_token_seconds=0.01)
    results = await asyncio.gather(*(ask(cached_orchestrator.address, tenant_metadata) for _ in range(12)))
    assert upstream_calls(sim) == 1
    assert len({text_of(r) for r in results}) == 1
    assert sorted(r[-1].end.cached for r in results) == [False] + [True] * 11


@pytest.mark.integration
async def test_a_document_event_drops_the_answers_that_cite_the_document(
    cached_orchestrator: Orchestrator,
    sim: SimServer,
    tenant_metadata: tuple[tuple[str, str], ...],
    nats_url: str,
    redis_url: str,
) -> None:
    await ask(cached_orchestrator.address, tenant_metadata)
    assert (await ask(cached_orchestrator.address, tenant_metadata))[-1].end.cached
    tenant = tenant_of(tenant_metadata)
    key = cache_key(tenant, to_request(SPEC))
    redis = Redis.from_url(redis_url)
    cache = ResponseCache(redis, namespace=cached_orchestrator.namespace)
    assert await cache.get(key) is not None

    client = await nats.connect(nats_url)
    try:
        event = DocumentChanged(tenant_id=tenant, document_id="d2", version=2, change="reprocessed")
        # Core NATS publish: the orchestrator's events stream captures it.
        await client.publish(JobQueues(cached_orchestrator.namespace).document_events_subject, event.to_json())
        await client.flush()
    finally:
        await client.close()
    deadline = time.monotonic() + 10
    while await cache.get(key) is not None:
        assert time.monotonic() < deadline, "the cached answer outlived the document event"
        await asyncio.sleep(0.1)
    await redis.aclose()

    responses = await ask(cached_orchestrator.address, tenant_metadata)
    assert responses[-1].end.cached is False
    assert upstream_calls(sim) == 2


def test_document_event_payload_round_trips_and_rejects_garbage() -> None:
    event = DocumentChanged(tenant_id="t1", document_id="d1", version=3, change="deleted")
    assert DocumentChanged.parse(event.to_json()) == event
    assert json.loads(event.to_json()) == {"tenant_id": "t1", "document_id": "d1", "version": 3, "change": "deleted"}
    for bad in (b"not json", b"{}", b'{"tenant_id": "t1", "document_id": "d1", "change": "renamed"}'):
        with pytest.raises(ValueError, match="not a document event"):
            DocumentChanged.parse(bad)
