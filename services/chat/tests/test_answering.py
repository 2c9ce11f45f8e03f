"""The ask pipeline driven with in-memory fakes of its own protocols (retriever, generator, replay, store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from pdfchat.chat.answering import (
    NO_PASSAGES_ANSWER,
    Answerer,
    AnswerLimits,
    GenerationDone,
    GenerationEvent,
    TokenChunk,
    Usage,
    WaitingForCapacity,
)
from pdfchat.chat.citations import Passage
from pdfchat.chat.prompt import Prompt
from pdfchat.chat.sessions import AssistantOutcome, Session
from pdfchat.common.errors import DeadlineExceeded, InvalidArgument, PdfchatError, Unavailable
from pdfchat.v1 import chat_pb2

SESSION = Session(
    id="sess-1",
    tenant_id="t1",
    user_id="u1",
    document_ids=("doc-a", "doc-b"),
    title="",
    created_at=datetime.now(UTC),
)

PASSAGES = [
    Passage("s1", "doc-a", page=2, text="The warranty lasts two years.", score=0.9, boxes=((1, 2, 3, 4),)),
    Passage("s2", "doc-b", page=7, text="Returns are accepted within 30 days.", score=0.7),
    Passage("s3", "doc-a", page=9, text="Unrelated.", score=0.1),
]


@dataclass
class FakeRetriever:
    passages: list[Passage]
    asked: list[tuple[str, tuple[str, ...], int]] = field(default_factory=list)

    async def retrieve(self, question: str, document_ids: Sequence[str], top_k: int) -> list[Passage]:
        self.asked.append((question, tuple(document_ids), top_k))
        return self.passages[:top_k]


@dataclass
class FakeGenerator:
    script: list[GenerationEvent | Exception]
    delay: float = 0.0
    prompts: list[Prompt] = field(default_factory=list)

    async def generate(self, prompt: Prompt) -> AsyncIterator[GenerationEvent]:
        self.prompts.append(prompt)
        for item in self.script:
            if self.delay:
                await asyncio.sleep(self.delay)
            if isinstance(item, Exception):
                raise item
            yield item


@dataclass
class FakeReplay:
    events: list[chat_pb2.ChatEvent] = field(default_factory=list)
    errors: list[PdfchatError] = field(default_factory=list)
    broken: bool = False

    async def append(self, tenant_id: str, message_id: str, event: chat_pb2.ChatEvent) -> None:
        if self.broken:
            raise ConnectionError("redis is down")
        self.events.append(event)

    async def fail(self, tenant_id: str, message_id: str, error: PdfchatError) -> None:
        self.errors.append(error)


@dataclass
class FakeStore:
    user_messages: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    finished: dict[str, AssistantOutcome] = field(default_factory=dict)

    async def add_user_message(self, session: Session, content: str) -> str:
        self.user_messages.append(content)
        return f"user-{len(self.user_messages)}"

    async def start_assistant_message(self, session: Session, message_id: str) -> None:
        self.started.append(message_id)

    async def finish_assistant_message(self, tenant_id: str, message_id: str, outcome: AssistantOutcome) -> None:
        self.finished[message_id] = outcome


def _done(model: str = "sim-1") -> GenerationDone:
    return GenerationDone(Usage(input_tokens=120, output_tokens=9, cost_usd=0.001), model=model, finish_reason="stop")


@dataclass
class Rig:
    retriever: FakeRetriever
    generator: FakeGenerator
    replay: FakeReplay
    store: FakeStore
    answerer: Answerer


def _rig(
    script: list[GenerationEvent | Exception],
    passages: list[Passage] | None = None,
    limits: AnswerLimits | None = None,
    delay: float = 0.0,
) -> Rig:
    retriever = FakeRetriever(PASSAGES if passages is None else passages)
    generator = FakeGenerator(script, delay=delay)
    replay = FakeReplay()
    store = FakeStore()
    answerer = Answerer(retriever, generator, replay, store, limits or AnswerLimits(top_k=2))
    return Rig(retriever, generator, replay, store, answerer)


async def _collect(answerer: Answerer, content: str) -> list[chat_pb2.ChatEvent]:
    return [event async for event in answerer.send(SESSION, content)]


async def test_answer_streams_citations_then_tokens_then_end_with_cited_passages() -> None:
    rig = _rig([TokenChunk("Two years "), WaitingForCapacity(1.5), TokenChunk("[1]."), _done()])
    events = await _collect(rig.answerer, "  How long is the warranty?  ")

    assert [event.WhichOneof("kind") for event in events] == ["citations", "token", "queued", "token", "end"]
    assert [event.seq for event in events] == [1, 2, 3, 4, 5]
    message_id = rig.store.started[0]
    assert {event.message_id for event in events} == {message_id}
    assert [c.segment_id for c in events[0].citations.citations] == ["s1", "s2"]
    assert events[0].citations.citations[0].page == 2
    end = events[-1].end
    assert end.answer == "Two years [1]."
    assert [c.segment_id for c in end.citations] == ["s1"]
    assert (end.usage.input_tokens, end.usage.output_tokens, end.model) == (120, 9, "sim-1")
    assert events[2].queued.expected_wait_seconds == 1.5


async def test_question_is_stored_and_retrieval_is_limited_to_the_session_documents() -> None:
    rig = _rig([TokenChunk("x"), _done()])
    await _collect(rig.answerer, "  What?  ")
    assert rig.store.user_messages == ["What?"]
    assert rig.retriever.asked == [("What?", ("doc-a", "doc-b"), 2)]
    prompt = rig.generator.prompts[0]
    assert prompt.question == "What?"
    assert [p.segment_id for p in prompt.passages] == ["s1", "s2"]


async def test_every_event_goes_to_the_replay_buffer_in_order_before_the_caller_sees_it() -> None:
    rig = _rig([TokenChunk("a"), TokenChunk("b"), TokenChunk("c"), _done()])
    seen: list[int] = []
    async for event in rig.answerer.send(SESSION, "q"):
        assert event in rig.replay.events
        seen.append(event.seq)
    assert [event.seq for event in rig.replay.events] == seen == [1, 2, 3, 4, 5]


async def test_finished_answer_is_stored_complete_with_citations_usage_and_model() -> None:
    rig = _rig([TokenChunk("See [2]."), _done(model="m-x")])
    await _collect(rig.answerer, "q")
    outcome = rig.store.finished[rig.store.started[0]]
    assert outcome.status == "complete"
    assert outcome.content == "See [2]."
    assert outcome.model == "m-x"
    assert outcome.usage is not None
    assert outcome.usage["output_tokens"] == 9
    assert [(r["segment_id"], r["cited"]) for r in outcome.citations] == [("s1", 0), ("s2", 1)]


async def test_answer_without_markers_ends_with_all_citations() -> None:
    rig = _rig([TokenChunk("Two years."), _done()])
    events = await _collect(rig.answerer, "q")
    assert [c.segment_id for c in events[-1].end.citations] == ["s1", "s2"]


@pytest.mark.parametrize("content", ["", "   \n "])
async def test_empty_question_is_invalid_and_nothing_is_stored(content: str) -> None:
    rig = _rig([_done()])
    with pytest.raises(InvalidArgument, match="empty"):
        await _collect(rig.answerer, content)
    assert rig.store.user_messages == []
    assert rig.store.started == []


async def test_too_long_question_is_invalid() -> None:
    rig = _rig([_done()], limits=AnswerLimits(max_question_chars=10))
    with pytest.raises(InvalidArgument, match="limit is 10"):
        await _collect(rig.answerer, "x" * 11)


async def test_no_retrieved_passages_ends_with_a_clear_answer_without_calling_the_model() -> None:
    rig = _rig([_done()], passages=[])
    events = await _collect(rig.answerer, "q")
    assert [event.WhichOneof("kind") for event in events] == ["citations", "end"]
    assert list(events[0].citations.citations) == []
    assert events[1].end.answer == NO_PASSAGES_ANSWER
    assert events[1].end.finish_reason == "no_passages"
    assert rig.generator.prompts == []
    assert rig.store.finished[rig.store.started[0]].status == "complete"


async def test_stream_cut_after_tokens_raises_and_stores_failed_never_an_end() -> None:
    rig = _rig([TokenChunk("Two "), TokenChunk("years"), Unavailable("orchestrator: provider stream cut")])
    events: list[chat_pb2.ChatEvent] = []

    async def consume() -> None:
        async for event in rig.answerer.send(SESSION, "q"):
            events.append(event)

    with pytest.raises(Unavailable, match="provider stream cut"):
        await consume()
    assert [event.WhichOneof("kind") for event in events] == ["citations", "token", "token"]
    outcome = rig.store.finished[rig.store.started[0]]
    assert (outcome.status, outcome.content) == ("failed", "Two years")
    assert not any(event.HasField("end") for event in rig.replay.events)
    assert [error.message for error in rig.replay.errors] == ["orchestrator: provider stream cut"]


async def test_generator_stream_ending_without_its_end_is_a_failure() -> None:
    rig = _rig([TokenChunk("partial")])
    with pytest.raises(Unavailable, match="before it was complete"):
        await _collect(rig.answerer, "q")
    assert rig.store.finished[rig.store.started[0]].status == "failed"


async def test_retrieval_failure_fails_the_message_before_any_event() -> None:
    rig = _rig([_done()])

    async def broken(question: str, document_ids: Sequence[str], top_k: int) -> list[Passage]:
        raise Unavailable("embedding: connection refused")

    rig.retriever.retrieve = broken  # type: ignore[method-assign]
    with pytest.raises(Unavailable, match="embedding"):
        await _collect(rig.answerer, "q")
    assert rig.replay.events == []
    assert rig.store.finished[rig.store.started[0]].status == "failed"


async def test_unexpected_error_becomes_internal_with_an_error_id() -> None:
    rig = _rig([TokenChunk("a"), RuntimeError("boom")])
    with pytest.raises(PdfchatError, match="internal error \\(error id") as caught:
        await _collect(rig.answerer, "q")
    assert caught.value.code.name == "INTERNAL"
    assert "boom" not in caught.value.message


async def test_answer_over_its_deadline_fails_with_deadline_exceeded() -> None:
    rig = _rig([TokenChunk("a"), TokenChunk("b"), _done()], limits=AnswerLimits(answer_deadline_seconds=0.05), delay=1)
    with pytest.raises(DeadlineExceeded):
        await _collect(rig.answerer, "q")
    assert rig.store.finished[rig.store.started[0]].status == "failed"


async def test_answer_continues_after_the_client_disconnects_so_it_can_be_resumed() -> None:
    rig = _rig([TokenChunk("a"), TokenChunk("b"), TokenChunk("c"), _done()], delay=0.01)
    stream = rig.answerer.send(SESSION, "q")
    first = await anext(stream)
    assert first.seq == 1
    await stream.aclose()  # the client went away
    await rig.answerer.close(grace_seconds=5)
    assert [event.seq for event in rig.replay.events] == [1, 2, 3, 4, 5]
    assert rig.replay.events[-1].HasField("end")
    assert rig.store.finished[rig.store.started[0]].status == "complete"


async def test_shutdown_cuts_answers_in_progress_and_stores_them_failed() -> None:
    rig = _rig([TokenChunk("a"), TokenChunk("b"), _done()], delay=10)
    stream = rig.answerer.send(SESSION, "q")
    await anext(stream)
    await rig.answerer.close(grace_seconds=0.05)
    with pytest.raises(Unavailable, match="stopped"):
        await anext(stream)
    assert rig.store.finished[rig.store.started[0]].status == "failed"
    assert rig.replay.errors


async def test_replay_buffer_outage_does_not_cut_the_live_answer() -> None:
    rig = _rig([TokenChunk("ok"), _done()])
    rig.replay.broken = True
    events = await _collect(rig.answerer, "q")
    assert events[-1].end.answer == "ok"
