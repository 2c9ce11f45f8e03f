"""Integration tests through the real service process: `python -m pdfchat.vector_index` over gRPC."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
import pytest_asyncio

from pdfchat.common.identity import Identity
from pdfchat.v1 import common_pb2, vector_index_pb2_grpc
from pdfchat.v1 import vector_index_pb2 as pb
from pdfchat_tools.devstack import Stack

from .conftest import near, segment_id, unit_vector

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Stub = vector_index_pb2_grpc.VectorIndexServiceStub


@pytest.fixture(scope="module")
def address(stack_factory: Callable[..., Stack]) -> str:
    stack = stack_factory(("vector_index",))
    return stack.config.env["PDFCHAT_VECTOR_INDEX_ADDR"]


@pytest_asyncio.fixture(loop_scope="session")
async def stub(address: str) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(address) as channel:
        yield Stub(channel)


def as_tenant(tenant_id: str) -> tuple[tuple[str, str], ...]:
    return Identity(tenant_id=tenant_id).to_metadata()


def segment(document_id: str, ordinal: int, text: str, version: int = 1) -> pb.Segment:
    return pb.Segment(
        id=segment_id(document_id, version, ordinal),
        document_id=document_id,
        version=version,
        page=ordinal + 1,
        ordinal=ordinal,
        text=text,
        boxes=[common_pb2.BoundingBox(x0=1, y0=2, x1=3, y1=4)],
    )


async def test_redelivered_upsert_keeps_one_copy_of_each_segment(stub: Stub) -> None:
    tenant, doc = f"t-{uuid.uuid4().hex[:8]}", f"doc-{uuid.uuid4().hex[:8]}"
    request = pb.UpsertSegmentsRequest(segments=[segment(doc, i, f"passage {i}") for i in range(3)])
    for _ in range(2):
        reply = await stub.UpsertSegments(request, metadata=as_tenant(tenant), timeout=10)
        assert reply.upserted == 3
    stats = await stub.GetDocumentIndexStats(
        pb.GetDocumentIndexStatsRequest(document_id=doc, version=1), metadata=as_tenant(tenant), timeout=10
    )
    assert (stats.segments, stats.embedded) == (3, 0)


async def test_hybrid_search_finds_a_tenants_segments_and_no_other_tenant_sees_them(stub: Stub) -> None:
    owner, doc = f"a-{uuid.uuid4().hex[:8]}", f"doc-{uuid.uuid4().hex[:8]}"
    segments = [
        segment(doc, 0, "华沙是波兰的首都和最大城市。"),
        segment(doc, 1, "Warsaw lies on the Vistula river."),
        segment(doc, 2, "Kraków was the capital before Warsaw."),
    ]
    topic = unit_vector(5)
    await stub.UpsertSegments(pb.UpsertSegmentsRequest(segments=segments), metadata=as_tenant(owner), timeout=10)
    vectors = [pb.SegmentVector(segment_id=s.id, values=near(topic, i, noise=0.3 * i)) for i, s in enumerate(segments)]
    reply = await stub.UpsertVectors(
        pb.UpsertVectorsRequest(vectors=vectors, model="test-model"), metadata=as_tenant(owner), timeout=10
    )
    assert reply.upserted == 3

    query = pb.SearchRequest(query_text="华沙是哪国的首都", query_vector=topic, top_k=2)
    assert list((await stub.Search(query, metadata=as_tenant(owner), timeout=10)).hits) == [], "not active yet"
    stranger = as_tenant(f"b-{uuid.uuid4().hex[:8]}")
    # another tenant activating the id changes nothing for the owner (the row is the stranger's own)
    await stub.ActivateVersion(pb.ActivateVersionRequest(document_id=doc, version=1), metadata=stranger, timeout=10)
    assert list((await stub.Search(query, metadata=as_tenant(owner), timeout=10)).hits) == []
    await stub.ActivateVersion(
        pb.ActivateVersionRequest(document_id=doc, version=1), metadata=as_tenant(owner), timeout=10
    )
    found = await stub.Search(query, metadata=as_tenant(owner), timeout=10)
    assert [hit.segment.id for hit in found.hits] == [segments[0].id, segments[1].id]
    first = found.hits[0]
    assert first.vector_score > 0.9
    assert first.text_score > 0
    assert first.score > found.hits[1].score
    assert first.segment.page == 1
    assert list(first.segment.boxes) == [common_pb2.BoundingBox(x0=1, y0=2, x1=3, y1=4)]

    assert list((await stub.Search(query, metadata=stranger, timeout=10)).hits) == []
    got = await stub.GetSegments(
        pb.GetSegmentsRequest(segment_ids=[s.id for s in segments]), metadata=stranger, timeout=10
    )
    assert list(got.segments) == []
    mine = await stub.GetSegments(
        pb.GetSegmentsRequest(segment_ids=[segments[2].id, segments[0].id]),
        metadata=as_tenant(owner),
        timeout=10,
    )
    assert [s.ordinal for s in mine.segments] == [2, 0]


async def test_delete_with_keep_version_removes_only_older_versions(stub: Stub) -> None:
    tenant, doc = as_tenant(f"t-{uuid.uuid4().hex[:8]}"), f"doc-{uuid.uuid4().hex[:8]}"
    for version in (1, 2):
        segments = [segment(doc, i, f"v{version}", version=version) for i in range(2)]
        await stub.UpsertSegments(pb.UpsertSegmentsRequest(segments=segments), metadata=tenant, timeout=10)
    deleted = await stub.DeleteDocumentSegments(
        pb.DeleteDocumentSegmentsRequest(document_id=doc, keep_version=2), metadata=tenant, timeout=10
    )
    assert deleted.deleted == 2
    kept = await stub.GetDocumentIndexStats(
        pb.GetDocumentIndexStatsRequest(document_id=doc, version=2), metadata=tenant, timeout=10
    )
    assert kept.segments == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda stub, md: stub.UpsertVectors(
                pb.UpsertVectorsRequest(
                    vectors=[pb.SegmentVector(segment_id=str(uuid.uuid4()), values=[0.1, 0.2])],
                    model="m",
                ),
                metadata=md,
                timeout=10,
            ),
            "has 2 dimensions",
        ),
        (
            lambda stub, md: stub.Search(pb.SearchRequest(query_text="warsaw", top_k=500), metadata=md, timeout=10),
            "top_k must be between 1 and 50",
        ),
        (
            lambda stub, md: stub.GetSegments(pb.GetSegmentsRequest(), metadata=md, timeout=10),
            "no segment ids given",
        ),
    ],
)
async def test_bad_input_is_invalid_argument_with_a_readable_message(
    stub: Stub, call: Callable[..., Awaitable[object]], message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(stub, as_tenant("t1"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (caught.value.details() or "")


async def test_call_without_tenant_is_unauthenticated(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Search(pb.SearchRequest(query_text="warsaw"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
