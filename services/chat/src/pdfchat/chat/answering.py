"""The ask pipeline: question -> passages -> citations -> streamed answer -> stored message.

The events of one answer are numbered from 1 and all carry the message id: seq 1 is the citations
event (every retrieved passage, numbered [1]..[n] in the order the prompt numbers them), then tokens
and queue notices, then exactly one end, whose citations are those the answer cites (all when it cites
none). Every event goes to the replay buffer before the caller sees it, so a client that reconnects
with ResumeMessage(last_seq) misses nothing.

The answer is produced by a task of its own, not by the caller's stream: a client that disconnects does
not cancel the generation; its events keep landing in the replay buffer and the message is still
stored, so the client can resume. A failure, before or after the first token, is never reported as an
end: the message is stored as failed with what was generated, the replay buffer records the error, and
the caller's stream raises it (the server interceptor turns it into the status).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pdfchat.chat.citations import Passage, build_citations, cited_numbers, to_records
from pdfchat.chat.prompt import Prompt, render
from pdfchat.chat.sessions import AssistantOutcome, Session, new_id
from pdfchat.common.errors import DeadlineExceeded, InvalidArgument, PdfchatError, Unavailable
from pdfchat.v1 import chat_pb2, common_pb2

log = logging.getLogger(__name__)

NO_PASSAGES_ANSWER = (
    "I found no passages to answer from: none of this session's documents has searchable text yet. "
    "They may still be processing, or they failed to process. Try again once they are ready."
)
NO_PASSAGES_FINISH_REASON = "no_passages"


# What a generator streams -------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class TokenChunk:
    text: str


@dataclass(frozen=True)
class WaitingForCapacity:
    """The request waits for LLM capacity (rate limits); the user should know."""

    expected_wait_seconds: float


@dataclass(frozen=True)
class GenerationDone:
    usage: Usage
    model: str
    finish_reason: str


GenerationEvent = TokenChunk | WaitingForCapacity | GenerationDone


# What the pipeline depends on ---------------------------------------------------------------------


class Retriever(Protocol):
    async def retrieve(self, question: str, document_ids: Sequence[str], top_k: int) -> list[Passage]:
        """The best passages for the question among the documents, best first."""
        ...


class Generator(Protocol):
    def generate(self, prompt: Prompt) -> AsyncIterator[GenerationEvent]:
        """Streams the answer; must end with GenerationDone, or raise."""
        ...


class ReplaySink(Protocol):
    async def append(self, tenant_id: str, message_id: str, event: chat_pb2.ChatEvent) -> None: ...

    async def fail(self, tenant_id: str, message_id: str, error: PdfchatError) -> None: ...


class MessageStore(Protocol):
    async def add_user_message(self, session: Session, content: str) -> str: ...

    async def start_assistant_message(self, session: Session, message_id: str) -> None: ...

    async def finish_assistant_message(self, tenant_id: str, message_id: str, outcome: AssistantOutcome) -> None: ...


# The pipeline -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerLimits:
    top_k: int = 8
    max_question_chars: int = 4000
    answer_deadline_seconds: float = 120.0


_Outbox = Callable[[chat_pb2.ChatEvent | PdfchatError], None]


class Answerer:
    def __init__(
        self,
        retriever: Retriever,
        generator: Generator,
        replay: ReplaySink,
        store: MessageStore,
        limits: AnswerLimits | None = None,
    ) -> None:
        self._retriever = retriever
        self._generator = generator
        self._replay = replay
        self._store = store
        self._limits = limits or AnswerLimits()
        self._producing: set[asyncio.Task[None]] = set()

    def validate_question(self, content: str) -> str:
        question = content.strip()
        if not question:
            raise InvalidArgument("content must not be empty")
        if len(question) > self._limits.max_question_chars:
            raise InvalidArgument(
                f"content is {len(question)} characters; the limit is {self._limits.max_question_chars}"
            )
        return question

    async def send(self, session: Session, content: str) -> AsyncIterator[chat_pb2.ChatEvent]:
        """Asks `content` in `session`; yields the answer's events, raises the error it failed with."""
        question = self.validate_question(content)
        await self._store.add_user_message(session, question)
        message_id = new_id()
        await self._store.start_assistant_message(session, message_id)
        outbox: asyncio.Queue[chat_pb2.ChatEvent | PdfchatError] = asyncio.Queue()
        task = asyncio.create_task(self._produce(session, question, message_id, outbox.put_nowait))
        self._producing.add(task)
        task.add_done_callback(self._producing.discard)
        while True:
            item = await outbox.get()
            if isinstance(item, PdfchatError):
                raise item
            yield item
            if item.HasField("end"):
                return

    async def close(self, grace_seconds: float) -> None:
        """Lets answers in progress finish for `grace_seconds`, then cuts them (stored as failed)."""
        if not self._producing:
            return
        _, pending = await asyncio.wait(set(self._producing), timeout=grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)

    async def _produce(self, session: Session, question: str, message_id: str, deliver: _Outbox) -> None:
        seq = 0
        parts: list[str] = []
        citations: list[common_pb2.Citation] = []

        async def emit(**kind: Any) -> None:
            nonlocal seq
            seq += 1
            event = chat_pb2.ChatEvent(seq=seq, message_id=message_id, **kind)
            await self._publish(session.tenant_id, event)
            deliver(event)

        try:
            async with asyncio.timeout(self._limits.answer_deadline_seconds):
                passages = await self._retriever.retrieve(question, session.document_ids, self._limits.top_k)
                citations = build_citations(passages)
                await emit(citations=chat_pb2.CitationsEvent(citations=citations))
                if passages:
                    done = await self._generate(render(question, passages), parts, emit)
                    answer = "".join(parts)
                else:
                    done = GenerationDone(Usage(), model="", finish_reason=NO_PASSAGES_FINISH_REASON)
                    answer = NO_PASSAGES_ANSWER
                numbers = cited_numbers(answer, len(citations))
                await self._store.finish_assistant_message(
                    session.tenant_id,
                    message_id,
                    AssistantOutcome(
                        content=answer,
                        citations=to_records(citations, numbers),
                        usage=_usage_record(done),
                        model=done.model,
                        status="complete",
                    ),
                )
                cited = [citations[number - 1] for number in numbers] or citations
                await emit(
                    end=chat_pb2.MessageEnd(
                        answer=answer,
                        citations=cited,
                        usage=common_pb2.Usage(
                            input_tokens=done.usage.input_tokens,
                            output_tokens=done.usage.output_tokens,
                            cost_usd=done.usage.cost_usd,
                        ),
                        model=done.model,
                        finish_reason=done.finish_reason,
                    )
                )
        except asyncio.CancelledError:
            await self._fail(
                session, message_id, parts, citations, Unavailable("the chat service stopped while answering"), deliver
            )
            raise
        except TimeoutError:
            error: PdfchatError = DeadlineExceeded(
                f"no complete answer within {self._limits.answer_deadline_seconds:g} s"
            )
            await self._fail(session, message_id, parts, citations, error, deliver)
        except PdfchatError as exc:
            await self._fail(session, message_id, parts, citations, exc, deliver)
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            log.exception("answer %s failed (error id %s)", message_id, error_id)
            error = PdfchatError(f"internal error (error id {error_id})")
            await self._fail(session, message_id, parts, citations, error, deliver)

    async def _generate(self, prompt: Prompt, parts: list[str], emit: Callable[..., Any]) -> GenerationDone:
        done: GenerationDone | None = None
        async for item in self._generator.generate(prompt):
            if isinstance(item, TokenChunk):
                if item.text:
                    parts.append(item.text)
                    await emit(token=common_pb2.TokenDelta(text=item.text))
            elif isinstance(item, WaitingForCapacity):
                await emit(queued=common_pb2.QueueNotice(expected_wait_seconds=item.expected_wait_seconds))
            else:
                done = item
        if done is None:
            # A stream that stops without its end was cut: never report it as a normal end.
            raise Unavailable("the answer stream ended before it was complete")
        return done

    async def _publish(self, tenant_id: str, event: chat_pb2.ChatEvent) -> None:
        # Best effort: losing resumability must not cut a live answer.
        try:
            await self._replay.append(tenant_id, event.message_id, event)
        except Exception as exc:
            log.warning("replay buffer write failed for message %s seq %d: %r", event.message_id, event.seq, exc)

    async def _fail(
        self,
        session: Session,
        message_id: str,
        parts: list[str],
        citations: list[common_pb2.Citation],
        error: PdfchatError,
        deliver: _Outbox,
    ) -> None:
        log.warning("answer %s failed after %d tokens: %s %s", message_id, len(parts), error.code.name, error.message)
        try:
            await self._store.finish_assistant_message(
                session.tenant_id,
                message_id,
                AssistantOutcome(
                    content="".join(parts),
                    citations=to_records(citations, []),
                    usage=None,
                    model="",
                    status="failed",
                ),
            )
        except Exception as exc:
            log.error("could not store failed answer %s: %r", message_id, exc)
        try:
            await self._replay.fail(session.tenant_id, message_id, error)
        except Exception as exc:
            log.warning("could not record the failure of answer %s in the replay buffer: %r", message_id, exc)
        deliver(error)


def _usage_record(done: GenerationDone) -> dict[str, Any]:
    return {
        "input_tokens": done.usage.input_tokens,
        "output_tokens": done.usage.output_tokens,
        "cost_usd": done.usage.cost_usd,
        "finish_reason": done.finish_reason,
    }
