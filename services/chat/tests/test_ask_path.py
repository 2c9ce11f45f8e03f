"""The ask path through real processes: vector_index, embedding, orchestrator (extractive, no LLM) and chat.

Segments and their vectors go straight into vector_index (as worker_pdf and embedding would put them),
then a question is asked through chat.SendMessage.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import grpc
import pytest

from pdfchat.common.identity import Identity
from pdfchat.v1 import (
    chat_pb2,
    chat_pb2_grpc,
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    vector_index_pb2,
    vector_index_pb2_grpc,
)
from pdfchat_tools import devstack

PAGES = [
    "The device ships with a charging cable and a quick start guide. Keep the box for returns.",
    "The warranty covers manufacturing defects for two years from the date of purchase. "
    "Water damage is not covered by the warranty.",
    "保修期为两年，自购买之日起计算。人为损坏不在保修范围内。",
]


@pytest.mark.integration
async def test_question_streams_citations_tokens_and_end_through_the_real_services(
    stack_factory: Callable[..., devstack.Stack],
) -> None:
    stack = stack_factory(("vector_index", "embedding", "orchestrator", "chat"))
    env = stack.config.env
    metadata = Identity(tenant_id=f"t-ask-{uuid.uuid4().hex[:8]}", user_id="u1").to_metadata()
    document_id = str(uuid.uuid4())
    segments = [
        vector_index_pb2.Segment(
            id=str(uuid.uuid5(uuid.UUID(document_id), f"1-{ordinal}")),
            document_id=document_id,
            version=1,
            page=ordinal + 1,
            ordinal=ordinal,
            text=text,
            boxes=[common_pb2.BoundingBox(x0=50, y0=100 + ordinal, x1=500, y1=140 + ordinal)],
        )
        for ordinal, text in enumerate(PAGES)
    ]
    async with (
        grpc.aio.insecure_channel(env["PDFCHAT_VECTOR_INDEX_ADDR"]) as index_channel,
        grpc.aio.insecure_channel(env["PDFCHAT_EMBEDDING_ADDR"]) as embedding_channel,
        grpc.aio.insecure_channel(env["PDFCHAT_CHAT_ADDR"]) as chat_channel,
    ):
        index = vector_index_pb2_grpc.VectorIndexServiceStub(index_channel)
        embedder = embedding_pb2_grpc.EmbeddingServiceStub(embedding_channel)
        chat = chat_pb2_grpc.ChatServiceStub(chat_channel)

        await index.UpsertSegments(vector_index_pb2.UpsertSegmentsRequest(segments=segments), metadata=metadata)
        embedded = await embedder.Embed(
            embedding_pb2.EmbedRequest(texts=PAGES, kind=embedding_pb2.EMBED_KIND_PASSAGE),
            metadata=metadata,
            timeout=120,
        )
        await index.UpsertVectors(
            vector_index_pb2.UpsertVectorsRequest(
                vectors=[
                    vector_index_pb2.SegmentVector(segment_id=segment.id, values=vector.values)
                    for segment, vector in zip(segments, embedded.embeddings, strict=True)
                ],
                model=embedded.model,
            ),
            metadata=metadata,
        )
        # searches see a document only once ingestion activates its version (when it is READY)
        await index.ActivateVersion(
            vector_index_pb2.ActivateVersionRequest(document_id=document_id, version=1), metadata=metadata, timeout=10
        )
        created = await chat.CreateSession(
            chat_pb2.CreateSessionRequest(document_ids=[document_id]), metadata=metadata, timeout=10
        )
        session_id = created.session.id

        question = "How long does the warranty cover manufacturing defects?"
        call = chat.SendMessage(
            chat_pb2.SendMessageRequest(session_id=session_id, content=question), metadata=metadata, timeout=120
        )
        events = [reply.event async for reply in call]

        kinds = [event.WhichOneof("kind") for event in events]
        assert kinds[0] == "citations"
        assert kinds[-1] == "end"
        assert "token" in kinds
        assert [event.seq for event in events] == list(range(1, len(events) + 1))
        message_id = events[0].message_id
        assert message_id
        assert {event.message_id for event in events} == {message_id}

        citations = events[0].citations.citations
        assert citations[0].page == 2, [(c.page, c.score) for c in citations]
        assert citations[0].document_id == document_id
        assert citations[0].boxes[0].x0 == 50
        end = events[-1].end
        tokens = "".join(event.token.text for event in events if event.HasField("token"))
        assert end.answer == tokens
        assert end.answer
        assert 2 in [citation.page for citation in end.citations]

        stored = await chat.ListMessages(chat_pb2.ListMessagesRequest(session_id=session_id), metadata=metadata)
        assert [(m.role, m.content) for m in stored.messages] == [("user", question), ("assistant", end.answer)]
        assert [c.segment_id for c in stored.messages[1].citations] == [c.segment_id for c in citations]

        resumed = chat.ResumeMessage(
            chat_pb2.ResumeMessageRequest(session_id=session_id, message_id=message_id, last_seq=2),
            metadata=metadata,
            timeout=30,
        )
        assert [reply.event async for reply in resumed] == events[2:]
