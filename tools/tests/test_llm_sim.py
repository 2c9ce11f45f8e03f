"""The LLM simulator behaves like an OpenAI-compatible provider, and like a loaded one on demand."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from pdfchat_tools.llm_sim import SimServer, start_subprocess, text
from pdfchat_tools.llm_sim.limits import SlidingWindowLimiter

CONTEXT_PROMPT = [
    {"role": "system", "content": "Answer from the passages."},
    {
        "role": "user",
        "content": "Passages:\n[1] (page 4) Paris is the capital of France. It is large.\n\nQuestion: capital?",
    },
]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer() as server:
        yield server


@pytest.fixture
def client(sim: SimServer) -> Iterator[openai.AsyncOpenAI]:
    sim.reset(config=True)
    return openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="sim", max_retries=0)


async def test_completion_quotes_first_passage_deterministically(client: openai.AsyncOpenAI) -> None:
    first = await client.chat.completions.create(model="sim-model", messages=CONTEXT_PROMPT)  # type: ignore[arg-type]
    second = await client.chat.completions.create(model="sim-model", messages=CONTEXT_PROMPT)  # type: ignore[arg-type]
    assert first.choices[0].message.content == "From the context: Paris is the capital of France. [1]"
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage is not None
    assert first.usage.prompt_tokens > 0
    assert first.usage.completion_tokens == text.count_tokens(first.choices[0].message.content or "")


async def test_completion_without_context_echoes_the_question(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(
        model="sim-model", messages=[{"role": "user", "content": "what is up"}]
    )
    assert reply.choices[0].message.content == "You asked: what is up"


async def test_stream_concatenates_to_the_answer_and_ends_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="sim-model",
        messages=CONTEXT_PROMPT,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    finish = None
    usage = None
    async for chunk in stream:
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    assert "".join(pieces) == "From the context: Paris is the capital of France. [1]"
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens == text.count_tokens("".join(pieces))


async def test_max_tokens_truncates_with_length_finish(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(model="sim-model", messages=CONTEXT_PROMPT, max_tokens=2)  # type: ignore[arg-type]
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 2


async def test_fixed_length_answers_for_benchmarks(sim: SimServer, client: openai.AsyncOpenAI) -> None:
    sim.configure(completion_tokens=50)
    reply = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 50


async def test_rpm_limit_answers_429_with_retry_after_and_ratelimit_headers(
    sim: SimServer, client: openai.AsyncOpenAI
) -> None:
    sim.configure(rpm_limit=2)
    for _ in range(2):
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    headers = refused.value.response.headers
    assert 55 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert sim.stats()["counters"]["status_429"] == 1


async def test_tpm_limit_counts_prompt_and_max_tokens(sim: SimServer, client: openai.AsyncOpenAI) -> None:
    sim.configure(tpm_limit=100)
    await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=60)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=60)


async def test_scheduled_faults_are_served_in_order(sim: SimServer, client: openai.AsyncOpenAI) -> None:
    sim.configure(next_faults=["503", "500"])
    with pytest.raises(openai.InternalServerError) as first:
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.InternalServerError) as second:
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert (first.value.status_code, second.value.status_code) == (503, 500)
    ok = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert ok.choices[0].message.content == "You asked: hi"


async def test_cut_stream_drops_the_connection_after_some_tokens(sim: SimServer, client: openai.AsyncOpenAI) -> None:
    sim.configure(next_faults=["cut"], cut_after_tokens=2)
    stream = await client.chat.completions.create(
        model="m",
        messages=CONTEXT_PROMPT,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    received: list[str] = []

    async def drain() -> None:
        async for chunk in stream:
            assert not any(choice.finish_reason for choice in chunk.choices)
            received.extend(choice.delta.content or "" for choice in chunk.choices)

    with pytest.raises(openai.APIConnectionError):
        await drain()
    assert "".join(received).split() == ["From", "the"]
    assert sim.stats()["counters"]["streams_cut"] == 1


async def test_timeout_fault_hangs_until_the_client_gives_up(sim: SimServer, client: openai.AsyncOpenAI) -> None:
    sim.configure(next_faults=["timeout"], timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], timeout=0.3)
    assert time.monotonic() - started < 2


async def test_time_to_first_token_delays_the_first_content(sim: SimServer, client: openai.AsyncOpenAI) -> None:
    sim.configure(time_to_first_token_seconds=0.3)
    started = time.monotonic()
    stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    assert time.monotonic() - started >= 0.3
    await stream.close()


async def test_embeddings_are_deterministic_unit_vectors_and_similar_for_similar_text(
    client: openai.AsyncOpenAI,
) -> None:
    reply = await client.embeddings.create(
        model="sim-embedding", input=["the cat sat on the mat", "the cat sat on a mat", "quantum chromodynamics"]
    )
    first, near, far = (item.embedding for item in reply.data)
    assert len(first) == 384
    assert abs(sum(v * v for v in first) - 1.0) < 1e-4

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert dot(first, near) > dot(first, far)
    again = await client.embeddings.create(model="sim-embedding", input="the cat sat on the mat")
    assert again.data[0].embedding == pytest.approx(first, abs=1e-6)


async def test_models_lists_the_configured_models(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [model.id for model in models.data] == ["sim-model", "sim-embedding"]


def test_config_rejects_unknown_settings(sim: SimServer) -> None:
    with pytest.raises(Exception, match="400"):
        sim.configure(no_such_setting=1)


def test_sliding_window_frees_capacity_after_a_minute() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(clock=lambda: now[0])
    assert limiter.admit(10, rpm=1, tpm=None).admitted
    refused = limiter.admit(10, rpm=1, tpm=None)
    assert not refused.admitted
    assert refused.retry_after_seconds == pytest.approx(60.0)
    now[0] = 60.5
    assert limiter.admit(10, rpm=1, tpm=None).admitted


def test_tokenize_round_trips_mixed_text() -> None:
    sample = "Hello  world, 你好世界! ok"
    assert "".join(text.tokenize(sample)) == sample
    assert text.count_tokens("你好 world") == 3


def test_runs_as_a_process_with_flags() -> None:
    process, client = start_subprocess(args=["--rpm", "7", "--ttft", "0.01"])
    try:
        config = client.configure(cut_after_tokens=5)
        assert (config["rpm_limit"], config["time_to_first_token_seconds"]) == (7, 0.01)
        assert client.stats()["counters"] == {}
    finally:
        process.terminate()
        process.wait(10)
