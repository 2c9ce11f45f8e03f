from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from pdfchat.chat.replay import ReplayBuffer, error_from, resume
from pdfchat.chat.sessions import StoredMessage
from pdfchat.common import errors, redis_client
from pdfchat.v1 import chat_pb2, common_pb2


def _token(message_id: str, seq: int, text: str) -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(seq=seq, message_id=message_id, token=common_pb2.TokenDelta(text=text))


def _end(message_id: str, seq: int, answer: str) -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(seq=seq, message_id=message_id, end=chat_pb2.MessageEnd(answer=answer))


def _message(message_id: str, status: str = "streaming", content: str = "") -> StoredMessage:
    return StoredMessage(
        id=message_id,
        session_id="s",
        tenant_id="t1",
        role="assistant",
        content=content,
        citations=[{"document_id": "d", "page": 1, "segment_id": "a", "cited": 0}],
        usage={"input_tokens": 5, "output_tokens": 2, "cost_usd": 0.0, "finish_reason": "stop"},
        model="sim",
        status=status,  # type: ignore[arg-type]
        created_at=datetime.now(UTC),
    )


def test_recorded_error_codes_map_back_to_domain_errors() -> None:
    assert isinstance(error_from("UNAVAILABLE", "x"), errors.Unavailable)
    assert isinstance(error_from("RESOURCE_EXHAUSTED", "x"), errors.ResourceExhausted)
    unknown = error_from("DATA_LOSS", "x")
    assert unknown.code.name == "INTERNAL"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = redis_client.create_redis(redis_url)
    yield client
    await client.aclose()


async def _follow(buffer: ReplayBuffer, message_id: str, after: int) -> list[chat_pb2.ChatEvent]:
    return [event async for event in buffer.follow("t1", message_id, after, idle_timeout=5)]


@pytest.mark.integration
async def test_follow_replays_events_after_last_seq_in_order_and_stops_at_the_end(redis: Redis) -> None:
    buffer = ReplayBuffer(redis, ttl_seconds=60)
    message_id = uuid.uuid4().hex
    for seq, text in enumerate(["a", "b", "c"], start=1):
        await buffer.append("t1", message_id, _token(message_id, seq, text))
    await buffer.append("t1", message_id, _end(message_id, 4, "abc"))
    assert [e.seq for e in await _follow(buffer, message_id, 0)] == [1, 2, 3, 4]
    assert [e.seq for e in await _follow(buffer, message_id, 2)] == [3, 4]
    ttl = await redis.ttl(buffer.key("t1", message_id))
    assert 0 < ttl <= 60


@pytest.mark.integration
async def test_follower_sees_past_and_live_events_without_gaps(redis: Redis) -> None:
    buffer = ReplayBuffer(redis, ttl_seconds=60)
    message_id = uuid.uuid4().hex
    await buffer.append("t1", message_id, _token(message_id, 1, "a"))
    follower = asyncio.create_task(_follow(buffer, message_id, 0))
    for seq in range(2, 30):
        await buffer.append("t1", message_id, _token(message_id, seq, "x"))
        if seq % 7 == 0:
            await asyncio.sleep(0.01)
    await buffer.append("t1", message_id, _end(message_id, 30, "done"))
    events = await asyncio.wait_for(follower, timeout=10)
    assert [e.seq for e in events] == list(range(1, 31))


@pytest.mark.integration
async def test_follow_raises_the_recorded_failure_instead_of_waiting(redis: Redis) -> None:
    buffer = ReplayBuffer(redis, ttl_seconds=60)
    message_id = uuid.uuid4().hex
    await buffer.append("t1", message_id, _token(message_id, 1, "a"))
    await buffer.fail("t1", message_id, errors.Unavailable("orchestrator: stream cut"))
    with pytest.raises(errors.Unavailable, match="stream cut"):
        await _follow(buffer, message_id, 0)


@pytest.mark.integration
async def test_other_tenants_buffer_is_separate(redis: Redis) -> None:
    buffer = ReplayBuffer(redis, ttl_seconds=60)
    message_id = uuid.uuid4().hex
    await buffer.append("t2", message_id, _end(message_id, 1, "secret"))
    assert not await buffer.exists("t1", message_id)


@pytest.mark.integration
async def test_follow_gives_up_when_the_producer_goes_silent(redis: Redis) -> None:
    buffer = ReplayBuffer(redis, ttl_seconds=60)
    message_id = uuid.uuid4().hex
    await buffer.append("t1", message_id, _token(message_id, 1, "a"))
    with pytest.raises(errors.Unavailable, match="no events"):
        _ = [event async for event in buffer.follow("t1", message_id, 0, idle_timeout=0.5)]


@pytest.mark.integration
async def test_resume_of_an_expired_complete_answer_returns_its_stored_end(redis: Redis) -> None:
    buffer = ReplayBuffer(redis, ttl_seconds=60)
    message = _message(uuid.uuid4().hex, status="complete", content="stored answer")
    events = [event async for event in resume(buffer, message, 7, idle_timeout=1)]
    assert len(events) == 1
    assert events[0].seq == 8
    assert events[0].end.answer == "stored answer"
    assert events[0].end.usage.input_tokens == 5
    assert [c.segment_id for c in events[0].end.citations] == ["a"]


@pytest.mark.integration
async def test_resume_of_an_expired_failed_answer_is_a_failed_precondition(redis: Redis) -> None:
    buffer = ReplayBuffer(redis, ttl_seconds=60)
    with pytest.raises(errors.FailedPrecondition):
        _ = [event async for event in resume(buffer, _message(uuid.uuid4().hex, status="failed"), 0, idle_timeout=1)]


@pytest.mark.integration
async def test_resume_of_an_answer_in_progress_follows_the_buffer(redis: Redis) -> None:
    buffer = ReplayBuffer(redis, ttl_seconds=60)
    message = _message(uuid.uuid4().hex)
    await buffer.append("t1", message.id, _token(message.id, 1, "a"))
    await buffer.append("t1", message.id, _end(message.id, 2, "a"))
    events = [event async for event in resume(buffer, message, 1, idle_timeout=5)]
    assert [e.seq for e in events] == [2]
