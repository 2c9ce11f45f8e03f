"""The embedders and the encode queue: the real packaged model, a stand-in encoder where the test is about
scheduling rather than vectors, and the LLM simulator (on loopback) as the OpenAI-compatible endpoint."""

import asyncio
import math
import threading
import time
from collections.abc import Iterator

import pytest
from openai import AsyncOpenAI

from pdfchat.common.errors import InvalidArgument, ResourceExhausted, Unavailable
from pdfchat.embedding.models import (
    PACKAGED_MODEL_NAME,
    EmbedKind,
    EncodeQueue,
    OpenAICompatibleEmbedder,
    SentenceTransformerEmbedder,
    TextLimits,
    normalized,
)
from pdfchat_tools.infra import free_port
from pdfchat_tools.llm_sim import SimConfig, SimServer


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# --- limits ---------------------------------------------------------------------------------------------------


def test_limits_refuse_no_texts() -> None:
    with pytest.raises(InvalidArgument, match="empty"):
        TextLimits().check([])


def test_limits_refuse_too_many_texts() -> None:
    with pytest.raises(InvalidArgument, match="too many texts"):
        TextLimits(max_texts=3).check(["a", "b", "c", "d"])


def test_limits_refuse_a_blank_text_by_position() -> None:
    with pytest.raises(InvalidArgument, match=r"texts\[1\] is empty"):
        TextLimits().check(["fine", "  "])


def test_limits_refuse_an_oversized_text() -> None:
    with pytest.raises(InvalidArgument, match=r"texts\[0\] has 11 characters"):
        TextLimits(max_chars=10).check(["x" * 11])


def test_limits_accept_texts_within_them() -> None:
    TextLimits(max_texts=2, max_chars=10).check(["hello", "你好"])


def test_normalized_vectors_have_unit_length() -> None:
    assert math.isclose(math.fsum(v * v for v in normalized([3.0, 4.0])), 1.0)
    assert normalized([0.0, 0.0]) == [0.0, 0.0]


# --- the encode queue with a stand-in encoder -------------------------------------------------------------------


class RecordingEncoder:
    """Blocking like a model: sleeps per call, records each batch and how many ran at once."""

    def __init__(self, seconds: float = 0.05, fail_on: str | None = None) -> None:
        self.seconds = seconds
        self.fail_on = fail_on
        self.batches: list[tuple[EmbedKind, list[str]]] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, texts: list[str], kind: EmbedKind) -> list[list[float]]:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.batches.append((kind, list(texts)))
        try:
            time.sleep(self.seconds)
            if self.fail_on in texts:
                raise RuntimeError("model crashed")
            return [[float(len(text)), 1.0 if kind is EmbedKind.QUERY else 2.0] for text in texts]
        finally:
            with self._lock:
                self.running -= 1


async def test_concurrent_queries_share_one_encode_and_get_their_own_vectors() -> None:
    encoder = RecordingEncoder()
    queue = EncodeQueue(encoder, max_batch=64)
    blocker = asyncio.create_task(queue.encode(["first"], EmbedKind.QUERY))
    await asyncio.sleep(0.01)  # the first encode is running; the next ones wait together
    texts = ["a" * n for n in range(1, 11)]
    results = await asyncio.gather(*(queue.encode([text], EmbedKind.QUERY) for text in texts))
    await blocker
    assert [result[0][0] for result in results] == [float(len(text)) for text in texts]
    assert len(encoder.batches) == 2, "ten waiting queries are encoded as one batch"
    assert encoder.most_at_once == 1


async def test_queries_overtake_waiting_passages() -> None:
    encoder = RecordingEncoder()
    queue = EncodeQueue(encoder, max_batch=4)
    document = asyncio.create_task(queue.encode([f"p{i}" for i in range(12)], EmbedKind.PASSAGE))
    await asyncio.sleep(0.01)  # the first passage batch runs; two more wait
    question = await queue.encode(["q"], EmbedKind.QUERY)
    await document
    assert question == [[1.0, 1.0]]
    kinds = [kind for kind, _ in encoder.batches]
    assert kinds == [EmbedKind.PASSAGE, EmbedKind.QUERY, EmbedKind.PASSAGE, EmbedKind.PASSAGE]
    assert all(len(texts) <= 4 for _, texts in encoder.batches)
    assert encoder.most_at_once == 1


async def test_passages_are_encoded_in_smaller_batches_than_queries() -> None:
    encoder = RecordingEncoder(seconds=0.0)
    queue = EncodeQueue(encoder, max_batch=64, passage_batch=4)
    await queue.encode([f"p{i}" for i in range(10)], EmbedKind.PASSAGE)
    await queue.encode([f"q{i}" for i in range(10)], EmbedKind.QUERY)
    assert [(kind, len(texts)) for kind, texts in encoder.batches] == [
        (EmbedKind.PASSAGE, 4),
        (EmbedKind.PASSAGE, 4),
        (EmbedKind.PASSAGE, 2),
        (EmbedKind.QUERY, 10),
    ]


async def test_a_large_request_comes_back_complete_and_in_order() -> None:
    queue = EncodeQueue(RecordingEncoder(seconds=0.0), max_batch=7)
    texts = ["x" * n for n in range(1, 51)]
    vectors = await queue.encode(texts, EmbedKind.PASSAGE)
    assert [vector[0] for vector in vectors] == [float(n) for n in range(1, 51)]


async def test_a_cancelled_caller_does_not_break_the_others() -> None:
    encoder = RecordingEncoder(seconds=0.1)
    queue = EncodeQueue(encoder, max_batch=64)
    running = asyncio.create_task(queue.encode(["running"], EmbedKind.QUERY))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(queue.encode(["abandoned"], EmbedKind.QUERY))
    other = asyncio.create_task(queue.encode(["other"], EmbedKind.QUERY))
    await asyncio.sleep(0.01)
    waiting.cancel()
    running.cancel()  # cancelled mid-encode: the batch still finishes before another starts
    assert await other == [[5.0, 1.0]]
    assert encoder.most_at_once == 1
    assert all("abandoned" not in texts for _, texts in encoder.batches)


async def test_an_encode_failure_reaches_every_caller_in_the_batch_and_the_queue_recovers() -> None:
    encoder = RecordingEncoder(fail_on="bad")
    queue = EncodeQueue(encoder, max_batch=64)
    blocker = asyncio.create_task(queue.encode(["first"], EmbedKind.QUERY))
    await asyncio.sleep(0.01)
    results = await asyncio.gather(
        queue.encode(["bad"], EmbedKind.QUERY), queue.encode(["good"], EmbedKind.QUERY), return_exceptions=True
    )
    await blocker
    assert all(isinstance(result, RuntimeError) for result in results)
    assert await queue.encode(["after"], EmbedKind.QUERY) == [[5.0, 1.0]]


# --- the real packaged model ------------------------------------------------------------------------------------


async def test_minilm_embeds_into_384_unit_length_dimensions(minilm: SentenceTransformerEmbedder) -> None:
    assert minilm.dimensions == 384
    assert minilm.model_name == PACKAGED_MODEL_NAME
    vectors = await minilm.embed(["A short sentence.", "另一个句子。"], EmbedKind.PASSAGE)
    assert [len(vector) for vector in vectors] == [384, 384]
    for vector in vectors:
        assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-4)


async def test_minilm_places_an_english_paraphrase_closer_than_an_unrelated_sentence(
    minilm: SentenceTransformerEmbedder,
) -> None:
    question, paraphrase, unrelated = await minilm.embed(
        [
            "How much did revenue grow last year?",
            "Last year the company's sales increased by ten percent.",
            "The cat is sleeping on the warm windowsill.",
        ],
        EmbedKind.QUERY,
    )
    assert _cosine(question, paraphrase) > _cosine(question, unrelated) + 0.2


async def test_minilm_places_a_chinese_paraphrase_closer_than_an_unrelated_sentence(
    minilm: SentenceTransformerEmbedder,
) -> None:
    sentence, paraphrase, unrelated = await minilm.embed(
        ["今天天气很好，阳光明媚。", "今天的天气非常晴朗。", "这家公司去年的收入增长了百分之十。"], EmbedKind.PASSAGE
    )
    assert _cosine(sentence, paraphrase) > _cosine(sentence, unrelated) + 0.2


async def test_minilm_gives_the_same_vectors_batched_or_alone(minilm: SentenceTransformerEmbedder) -> None:
    texts = ["The first page talks about results.", "第二页讨论风险。", "A third, longer sentence about costs."]
    together = await asyncio.gather(*(minilm.embed([text], EmbedKind.QUERY) for text in texts))
    for text, (batched,) in zip(texts, together, strict=True):
        (alone,) = await minilm.embed([text], EmbedKind.QUERY)
        assert _cosine(alone, batched) > 0.9999


# --- an OpenAI-compatible endpoint (the simulator in tools/) ---------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(embedding_dimensions=96)) as server:
        yield server


@pytest.fixture
def fresh_sim(sim: SimServer) -> SimServer:
    sim.reset()
    sim.configure(embedding_dimensions=96)
    return sim


async def test_api_embedder_learns_dimensions_and_returns_unit_vectors_in_order(fresh_sim: SimServer) -> None:
    embedder = await OpenAICompatibleEmbedder.connect(fresh_sim.openai_base_url, None, "sim-embedding", max_batch=3)
    try:
        assert embedder.dimensions == 96
        assert embedder.model_name == "sim-embedding"
        texts = [f"passage {n} about revenue" for n in range(7)]
        vectors = await embedder.embed(texts, EmbedKind.PASSAGE)
        again = [(await embedder.embed([text], EmbedKind.PASSAGE))[0] for text in texts]
    finally:
        await embedder.close()
    assert len(vectors) == 7
    for vector, alone in zip(vectors, again, strict=True):
        assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-6)
        assert _cosine(vector, alone) > 0.9999, "each text gets its own vector, in order"
    stats = fresh_sim.stats()
    assert stats["counters"]["embedding_requests"] == 1 + 3 + 7, "7 texts in batches of 3, after one probe"


async def test_api_embedder_asks_for_configured_dimensions(fresh_sim: SimServer) -> None:
    embedder = await OpenAICompatibleEmbedder.connect(fresh_sim.openai_base_url, "k", "sim-embedding", dimensions=384)
    try:
        (vector,) = await embedder.embed(["hello"], EmbedKind.QUERY)
    finally:
        await embedder.close()
    assert len(vector) == embedder.dimensions == 384


async def test_api_rate_limit_is_resource_exhausted_with_retry_after(fresh_sim: SimServer) -> None:
    fresh_sim.configure(rpm_limit=1)
    client = AsyncOpenAI(base_url=fresh_sim.openai_base_url, api_key="k", max_retries=0)
    embedder = OpenAICompatibleEmbedder(client, "sim-embedding")
    try:
        await embedder.embed(["first"], EmbedKind.QUERY)
        with pytest.raises(ResourceExhausted) as limited:
            await embedder.embed(["second"], EmbedKind.QUERY)
    finally:
        await embedder.close()
    assert limited.value.retry_after_seconds is not None
    assert limited.value.retry_after_seconds >= 1


async def test_api_unreachable_is_unavailable() -> None:
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="k", max_retries=0)
    embedder = OpenAICompatibleEmbedder(client, "sim-embedding", timeout_seconds=2)
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            await embedder.embed(["hello"], EmbedKind.QUERY)
    finally:
        await embedder.close()


async def test_api_embedder_gives_up_at_start_up_when_the_endpoint_never_answers() -> None:
    with pytest.raises(Unavailable):
        await OpenAICompatibleEmbedder.connect(
            f"http://127.0.0.1:{free_port()}/v1", None, "m", max_retries=0, startup_wait_seconds=0.5
        )
